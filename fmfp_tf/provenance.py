"""What produced a result: library versions and the machine, recorded beside every output."""
import platform
import sys


def versions():
    import keras
    import numpy
    import tensorflow as tf

    from fmfp_tf.version import __version__

    found = {
        "fmfp_tf": __version__,
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
    try:
        from importlib.metadata import version

        found["cleverhans"] = version("cleverhans")
    except Exception:  # metadata missing: record that rather than fail a run
        found["cleverhans"] = None
    return found


def machine():
    import os

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": [gpu.name for gpu in gpus],
    }


def resident_memory_mb():
    """This process's resident memory now, in MiB (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 1024 if sys.platform != "darwin" else peak / 2 ** 20
