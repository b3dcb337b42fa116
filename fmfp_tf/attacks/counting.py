"""Counted cost: the forward and backward passes an attack actually ran, per image.

The unit of A3 (Liu et al. 2022) and of this project's reports: one forward pass of one image
through the model is 1 forward; an input gradient of one image is 1 forward and 1 backward (the
gradient needs the forward it differentiates). A batch of 256 counts 256. Passes are counted
where the attacks call their compiled functions, from what those functions report they executed
(a compiled loop returns its trip count), not estimated from settings. A model that averages
several draws per call (EOT) counts each draw (`passes_per_call`).

    with counting.counted() as passes:
        x_adv = apgd(model, x, y)
    passes.as_dict()  # {"forward": 10100, "backward": 10000}

Counters nest: each open one counts every pass made inside it (an ensemble's total and each of
its components at once). Nothing is counted outside a `counted()` block.
"""
import contextlib
import contextvars
import dataclasses

_OPEN = contextvars.ContextVar("fmfp_tf_pass_counters", default=())


@dataclasses.dataclass
class Passes:
    """Forward and backward passes over single images."""

    forward: int = 0
    backward: int = 0

    def as_dict(self):
        return {"forward": int(self.forward), "backward": int(self.backward)}

    def __add__(self, other):
        return Passes(self.forward + other.forward, self.backward + other.backward)

    @classmethod
    def from_dict(cls, values):
        """A record's `passes` back as Passes; None when the record has none (older cells)."""
        if not isinstance(values, dict):
            return None
        try:
            return cls(int(values["forward"]), int(values["backward"]))
        except (KeyError, TypeError, ValueError):
            return None


@contextlib.contextmanager
def counted():
    """A new counter of the passes made inside the block (nested blocks count too)."""
    passes = Passes()
    token = _OPEN.set(_OPEN.get() + (passes,))
    try:
        yield passes
    finally:
        _OPEN.reset(token)


def add(model, images, forward=0, backward=0):
    """Adds `forward` forward and `backward` backward passes for each of `images` images of
    `model` to every open counter (a gradient is given as forward=1, backward=1)."""
    counters = _OPEN.get()
    if not counters:
        return
    per_call = int(getattr(model, "passes_per_call", 1))
    forward, backward = (int(images) * int(v) * per_call for v in (forward, backward))
    for passes in counters:
        passes.forward += forward
        passes.backward += backward


def add_passes(passes):
    """Adds a Passes counted elsewhere (a stage read back from disk) to every open counter."""
    for counter in _OPEN.get():
        counter.forward += passes.forward
        counter.backward += passes.backward
