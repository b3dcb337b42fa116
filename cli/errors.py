"""Turning library errors into one-line messages and exit codes (no tracebacks)."""
import errno
import os
import sys

import click

# the library's parameters -> the flags that feed them, where the names differ or a value reads
# as a flag (an error declares which texts of its message name parameters: FmfpError.parameters)
FLAGS = {"overwrite": "--overwrite", "resume": "--resume", "force": "--force",
         "unsafe": "--unsafe-load", "test_time": "--no-test-time", "dataset": "--dataset",
         "data_dir": "--data-dir", "source": "--source-model", "name": "--name", "out_dir": "--out",
         "max_bytes": "--max-size", "data_dirs": "--data-dir", "data_root": "--data-root"}


# path errors the system reports with the path: one line naming it, whatever command hit it
PATH_ERRORS = {
    errno.ENOTDIR: "a part of this path is a file, not a directory",
    errno.EROFS: "read-only file system; choose a writable location",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ELOOP: "too many levels of symbolic links (a link loop)",
    errno.ENAMETOOLONG: "file name too long",
    errno.EISDIR: "is a directory, where a file was expected",
}


def as_flag(name, text):
    """How the CLI says `text` of a library message, which names parameter `name`:
    "resume=True" -> "--resume", "dataset=NAME" -> "--dataset NAME", "another out_dir" ->
    "another --out"."""
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    head, sep, value = text.partition("=")
    if sep and head.endswith(name):
        return head[:-len(name)] + (flag if value in ("True", "False") else f"{flag} {value}")
    return text.replace(name, flag)


def report(message, code):
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def run_guarded(command):
    """Runs the click app; FmfpError -> its exit code, interruption -> 130, no traceback."""
    try:
        command.main(standalone_mode=False)
    except click.exceptions.Abort:
        report("aborted", 130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        report("interrupted", 130)
    except Exception as error:  # noqa: BLE001 - the library's own errors carry an exit code
        # the library's errors only: no TensorFlow (the training loop) to turn an error into a line
        from fmfp_tf.errors import FmfpError, Interrupted, is_storage_full, storage_full_reason

        if isinstance(error, FmfpError):
            report(error.spelled(as_flag), error.exit_code)
        if is_storage_full(error):
            where = getattr(error, "filename", None) or "an output"
            report(f"{where}: cannot write ({storage_full_reason(error)}); free some space and "
                   "run again (unfinished outputs were not kept)", 1)
        if isinstance(error, Interrupted):
            report(error.spelled(as_flag), 130)
        if isinstance(error, FileExistsError):
            path = error.filename or str(error)
            if os.path.islink(path) and not os.path.exists(path):
                report(f"{path}: a symbolic link that leads nowhere (or round in a loop); remove "
                       "it or choose another path", 1)
            report(f"{path}: already exists", 1)
        if isinstance(error, OSError) and error.errno in PATH_ERRORS and error.filename:
            report(f"{error.filename}: {PATH_ERRORS[error.errno]}", 1)
        raise
