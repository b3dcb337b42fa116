"""PyTorch: what the layers and attacks need beyond `keras.ops`."""
import torch


def is_concrete(x):
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)
    return not compiling() and not getattr(x, "is_meta", False)


def to_numpy(x):
    return x.detach().cpu().float().numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def gpu_names():
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def value_and_grad(fn, x):
    """(value, aux, d value / d x) for fn(x) -> (scalar value, aux)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value, aux = fn(x)
        (grad,) = torch.autograd.grad(value, x)
    return value.detach(), torch.utils._pytree.tree_map(
        lambda t: t.detach() if isinstance(t, torch.Tensor) else t, aux), grad


def compile(fn, model):
    """Eager: PyTorch runs `fn` op by op with no graph to keep (only input gradients are
    taken, inside `value_and_grad`)."""
    del model

    def run(*args, **kwargs):
        with torch.no_grad():
            return fn(*args, **kwargs)

    return run


def while_loop(cond, body, loop_vars):
    loop_vars = tuple(loop_vars)
    while bool(cond(*loop_vars)):
        loop_vars = tuple(body(*loop_vars))
    return loop_vars


def local_devices():
    import torch

    gpus = [f"cuda:{k}" for k in range(torch.cuda.device_count())]
    return ["cpu", *gpus], gpus


class Replicas:
    """Data-parallel attacks are not built on PyTorch (its eager attacks run on one device)."""

    def __init__(self, count):
        from fmfp_tf.errors import UsageError

        raise UsageError(f"{count} devices: data-parallel attacks run on TensorFlow and JAX; on "
                         "PyTorch attacks use one device (--devices 1)")
