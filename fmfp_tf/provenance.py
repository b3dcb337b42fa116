"""What produced a result: library versions and the machine, recorded beside every output."""
import functools
import platform
import sys


def versions():
    """Versions of Python, the package, Keras (with its backend) and each installed framework
    (None when absent), read from package metadata: no framework is imported for it."""
    from importlib.metadata import PackageNotFoundError, version

    import keras
    import numpy

    from fmfp_tf.version import __version__

    found = {"fmfp_tf": __version__, "python": sys.version.split()[0],
             "keras": keras.__version__, "keras_backend": keras.backend.backend(),
             "numpy": numpy.__version__}
    for package in ("tensorflow", "jax", "jaxlib", "torch", "cleverhans"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:  # not installed: record that rather than fail a run
            found[package] = None
    return found


def _cpu_model():
    """The CPU's model name (timings depend on it: AMX or not), from /proc/cpuinfo on Linux."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=None)
def cpu_flags():
    """The CPU's feature flags (avx512_bf16, amx_bf16, ...) from /proc/cpuinfo; empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bfloat16_cpu():
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def machine():
    import os

    from fmfp_tf import backend

    return {
        "platform": platform.platform(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": backend.current().gpu_names(),
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
