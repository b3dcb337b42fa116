"""Attacks data-parallel over the local devices, with the backend's own engine.

Inside `data_parallel(n)`, every compiled attack function splits the arguments it declares as
per-image (`common.compiled(..., batch=...)`) over n devices and replicates the rest: on JAX
through a `keras.distribution.DataParallel` device mesh (the batch axis sharded, one program
over the devices), on TensorFlow through a `tf.distribute.MirroredStrategy` (one replica per
device, the shares gathered back in order). An image's result does not depend on the device it
is crafted on: its random draws derive from (seed, its id) (`common.per_image`), and every
computation of an attack is per image.

    with devices.data_parallel("all"):
        x_adv = attacks.apgd(model, x, y, eps=8 / 255)

Devices are named as `evaluate --devices` takes them: "auto" (every accelerator, or one CPU
device when there is none), "all" (every local device, virtual CPU devices included) or a count.
"""
import contextlib
import contextvars

from fmfp_tf import backend
from fmfp_tf.errors import UsageError

_ACTIVE = contextvars.ContextVar("fmfp_tf_data_parallel", default=None)


def local_devices():
    """(all local devices, the accelerators among them) of the current backend, as names."""
    return backend.current().local_devices()


def count(devices="auto"):
    """The number of devices `devices` names: "auto", "all" or a positive count."""
    every, accelerators = local_devices()
    if devices in (None, "auto"):
        return max(len(accelerators), 1)
    if devices == "all":
        return len(every)
    try:
        number = int(devices)
    except (TypeError, ValueError):
        raise UsageError(f"devices must be a count, 'all' or 'auto'; got {devices!r}") from None
    if isinstance(devices, bool) or number < 1 or str(number) != str(devices).strip():
        raise UsageError(f"devices must be a positive count, 'all' or 'auto'; got {devices!r}")
    if number > len(every):
        raise UsageError(f"devices {number}: this machine has {len(every)} local device(s) on "
                         f"this backend ({', '.join(every)})")
    return number


@contextlib.contextmanager
def data_parallel(devices="auto"):
    """Compiled attack functions called inside run data-parallel over `devices` (see `count`);
    yields the number of devices. One device is the plain call."""
    number = count(devices)
    if number == 1:
        yield 1
        return
    replicas = backend.current().Replicas(number)
    token = _ACTIVE.set(replicas)
    try:
        # on TensorFlow, a model built or loaded here has a copy of its variables per replica
        with replicas.scope():
            yield number
    finally:
        _ACTIVE.reset(token)


def parallel(run, positions, model_of):
    """`run` (a compiled attack function) calling through the active replicas, if any, with the
    arguments at `positions` split per image; `model_of()` is the model it attacks (held
    weakly by the caller)."""

    def call(*args, **static):
        replicas = _ACTIVE.get()
        if replicas is None or not positions:
            return run(*args, **static)
        return replicas.call(run, args, static, positions, model_of())

    return call
