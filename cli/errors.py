"""Turning library errors into one-line messages and exit codes (no tracebacks)."""
import errno
import os
import re
import sys

import click

# the library's messages name Python parameters; on the command line they are flags
PARAMETER_FLAGS = (
    (r"\boverwrite=True\b", "--overwrite"), (r"\bresume=True\b", "--resume"),
    (r"\bforce=True\b", "--force"), (r"\bunsafe=True\b", "--unsafe-load"),
    (r"\btest_time=False\b", "--no-test-time"), (r"\bdataset=", "--dataset "),
    (r"\bdata_dir=", "--data-dir "), (r"\bsource=", "--source-model "), (r"\bname=", "--name "),
    (r"\bout_dir\b", "--out"), (r"\bmax_bytes\b", "--max-size"), (r"\bdata_dirs:", "--data-dir"),
    (r"\bdata_root\b", "--data-root"),
)


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


def as_flags(message):
    """`message` with the Python parameters it names replaced by the CLI's flags."""
    for pattern, flag in PARAMETER_FLAGS:
        message = re.sub(pattern, flag, message)
    return message


def report(message, code):
    click.echo(f"Error: {as_flags(message)}", err=True)
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
        from fmfp_tf.errors import FmfpError, is_storage_full, storage_full_reason
        from fmfp_tf.training.loop import Interrupted

        if isinstance(error, FmfpError):
            report(str(error), error.exit_code)
        if is_storage_full(error):
            where = getattr(error, "filename", None) or "an output"
            report(f"{where}: cannot write ({storage_full_reason(error)}); free some space and "
                   "run again (unfinished outputs were not kept)", 1)
        if isinstance(error, Interrupted):
            report(str(error), 130)
        if isinstance(error, FileExistsError):
            path = error.filename or str(error)
            if os.path.islink(path) and not os.path.exists(path):
                report(f"{path}: a symbolic link that leads nowhere (or round in a loop); remove "
                       "it or choose another path", 1)
            report(f"{path}: already exists", 1)
        if isinstance(error, OSError) and error.errno in PATH_ERRORS and error.filename:
            report(f"{error.filename}: {PATH_ERRORS[error.errno]}", 1)
        raise
