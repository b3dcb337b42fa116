"""The `fmfp-tf` console script's first step: a quiet start for the CLI (not part of the library).

TensorFlow's start-up notices (CUDA probing on a machine without a GPU, oneDNN and CPU-feature
notices) are written by its native libraries straight to file descriptor 2, before its logging is
configured, so `TF_CPP_MIN_LOG_LEVEL` does not silence them. While the CLI imports the library
(which imports Keras, and Keras its backend) and TensorFlow enumerates its devices, fd 2 goes to a
temporary file; afterwards every line that is not one of those known notices is written back, so
real errors still show. Set `FMFP_TF_TF_NOTICES=1` to see the notices anyway.

This module sits outside the `fmfp_tf` package on purpose: `import fmfp_tf.cli` runs
`fmfp_tf/__init__.py` first, which imports Keras, so a filter inside the package would start
too late. The library itself installs no hook and redirects nothing.
"""
import contextlib
import os
import re
import sys
import tempfile

# One pattern per notice; each is informational on a machine without a GPU or without the
# optional CUDA/TensorRT libraries. A line of glog format ("I0000 00:00:... file.cc:12] ...")
# or absl's preamble is dropped only when its message matches one of these.
NOTICES = [
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"oneDNN custom operations are on",
    r"Could not find cuda drivers on your machine",
    r"failed call to cuInit",
    r"Failed call to cuInit",
    r"cuda_diagnostics",
    r"kernel driver does not appear to be running on this host",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"rebuild TensorFlow with the appropriate compiler flags",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
    r"Could not find TensorRT",
]
_NOTICE = re.compile("|".join(NOTICES))


def is_notice(line):
    return bool(_NOTICE.search(line))


@contextlib.contextmanager
def native_notices_filtered():
    """Within the block, fd 2 goes to a temporary file; on exit its non-notice lines come back."""
    if os.environ.get("FMFP_TF_TF_NOTICES") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (some embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        _STDERR[0] = saved
        try:
            yield
        finally:
            _STDERR[0] = 2
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_notice(line)]
            if kept:
                os.write(2, "".join(kept).encode("utf-8"))


def _pick_backend():
    """Without TensorFlow (Keras's default backend) and with no backend chosen, the CLI uses the
    one installed (`pip install 'fmfp-tf[jax]'` then `fmfp-tf evaluate` works as it is); a
    backend named in KERAS_BACKEND, or an installed one named in ~/.keras/keras.json, is left
    as it is."""
    import importlib.util
    import json

    if "KERAS_BACKEND" in os.environ or importlib.util.find_spec("tensorflow") is not None:
        return
    config = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                          "keras.json")
    modules = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    try:
        with open(config, encoding="utf-8") as handle:
            named = modules.get(json.load(handle).get("backend"))
        # (Keras writes its default there on first use: only an installed one is a choice)
        if named and importlib.util.find_spec(named) is not None:
            return
    except (OSError, ValueError, AttributeError):
        pass
    for name, module in (("jax", "jax"), ("torch", "torch")):
        if importlib.util.find_spec(module) is not None:
            os.environ["KERAS_BACKEND"] = name  # this process is the CLI's own
            return


_STARTING = [True]
_STDERR = [2]  # the real stderr while fd 2 is filtered


def _stopped(signum, frame):
    """SIGTERM where no command took signals over (start-up: seconds of imports; a short
    command): say so in one line rather than vanish; outputs are written whole or not at all."""
    where = "while starting; nothing was written" if _STARTING[0] else (
        "(outputs are written whole or not at all)")
    os.write(_STDERR[0], f"Error: stopped by signal {signum} {where}\n".encode())
    os._exit(128 + signum)


def _answered_at_once(args):
    """`fmfp-tf --help` (or -h) and `fmfp-tf --version` need no Keras: the group's declaration
    answers them (`fmfp_tf_cli_group`), unless installed plugins may add commands or options."""
    if args not in (["--help"], ["-h"], ["--version"]):
        return False
    from importlib.metadata import entry_points

    return not (entry_points(group="fmfp_tf.commands") or entry_points(group="fmfp_tf.plugins"))


def main():
    """The `fmfp-tf` console script: imports the CLI (and with it Keras and TensorFlow) inside the
    filter, then runs it."""
    import signal

    if _answered_at_once(sys.argv[1:]):
        import fmfp_tf_cli_group

        return fmfp_tf_cli_group.build(fmfp_tf_cli_group.placeholders())(prog_name="fmfp-tf")

    signal.signal(signal.SIGTERM, _stopped)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # this process is the CLI's own
    _pick_backend()
    try:
        with native_notices_filtered():
            from fmfp_tf.cli.main import main as cli_main
    except ImportError as error:  # Keras without its backend: the library's one line
        if not str(error).startswith("fmfp_tf:"):
            raise
        sys.stderr.write(f"Error: {str(error)[len('fmfp_tf: '):]}\n")
        sys.exit(1)
    if "tensorflow" in sys.modules:
        with native_notices_filtered():
            # CUDA is probed when devices are first listed, not at import: do it in the filter
            try:
                sys.modules["tensorflow"].config.list_physical_devices()
            except Exception:  # noqa: BLE001 - a broken device setup shows up on first real use
                pass
    _STARTING[0] = False
    return cli_main()


if __name__ == "__main__":
    main()
