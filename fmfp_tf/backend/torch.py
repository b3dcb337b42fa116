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
