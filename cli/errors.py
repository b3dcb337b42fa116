"""Turning library errors into one-line messages and exit codes (no tracebacks)."""
import sys

import click


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
            report(f"{error}: already exists (use --force to replace it)", 1)
        raise
