"""What `import fmfp_tf` arranges for the moment TensorFlow and Keras are first imported.

- TensorFlow's start-up notices (CUDA probing on a machine without a GPU, oneDNN and CPU-feature
  notices) are written by its native libraries straight to file descriptor 2, before its logging
  is configured, so `TF_CPP_MIN_LOG_LEVEL` does not silence them. While TensorFlow loads and
  enumerates its devices, fd 2 is sent to a temporary file; afterwards every line that is not one
  of those known notices is written back, so real errors still show.
- FeatureMask and FeaturePadding are registered with Keras as soon as Keras is imported, so
  `keras.models.load_model` finds them after a plain `import fmfp_tf`, without making
  `import fmfp_tf` (and `fmfp-tf --help`) pay the seconds that importing TensorFlow costs.

Both ride on one `sys.meta_path` finder that wraps the loaders of `tensorflow` and `keras` and
acts once the outermost of those imports has finished. Set `FMFP_TF_TF_NOTICES=1` to see the
notices anyway.
"""
import contextlib
import importlib
import importlib.abc
import os
import re
import sys
import tempfile

WATCHED = ("tensorflow", "keras")

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

_depth = 0
_registered = False


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
        try:
            yield
        finally:
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


def register_layers():
    """Imports the layer modules, whose decorators register them with Keras (idempotent)."""
    global _registered
    if not _registered:
        _registered = True
        importlib.import_module("fmfp_tf.layers")


def _after_outermost_import():
    if "tensorflow" in sys.modules:
        # CUDA is probed when devices are first listed, not at import: do it inside the filter
        with native_notices_filtered():
            try:
                sys.modules["tensorflow"].config.list_physical_devices()
            except Exception:  # noqa: BLE001 - a broken device setup shows up on first real use
                pass
    if "keras" in sys.modules:
        register_layers()


class _Finder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` and `keras` with the other finders and wraps their loaders."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):
            global _depth
            _depth += 1
            try:
                with native_notices_filtered():
                    original(module)
            finally:
                _depth -= 1
            if _depth == 0:
                _after_outermost_import()

        loader.exec_module = exec_module  # this loader instance serves this one module only
        return spec


def install():
    """Installs the finder once; if Keras is already imported, registers the layers now."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        register_layers()
