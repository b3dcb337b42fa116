"""PGD (Madry et al. 2018) in L-inf and L2, with random start and restarts; I-FGSM is PGD without
random start (Kurakin et al. 2017, the basic iterative method)."""
import dataclasses
import typing

import numpy as np
from keras import ops

from fmfp_tf.attacks import common, counting
from fmfp_tf.attacks.common import l2_norm, project  # noqa: F401  (part of this module's API)
from fmfp_tf.settings import MAX_COUNT, Settings, setting

NORMS = ("inf", "2")


@dataclasses.dataclass(frozen=True)
class PGDSettings(Settings):
    """PGD's effort in an evaluation (its step is 2.5 eps / steps, Madry et al. 2018)."""

    prefix: typing.ClassVar[str] = "pgd"
    steps: int = setting(20, "PGD iterations per restart", minimum=1, maximum=MAX_COUNT)
    restarts: int = setting(1, "PGD's independent random starts", minimum=1, maximum=MAX_COUNT)


@dataclasses.dataclass(frozen=True)
class IFGSMSettings(Settings):
    """I-FGSM's effort in an evaluation (its step is eps / 4)."""

    prefix: typing.ClassVar[str] = "ifgsm"
    steps: int = setting(10, "I-FGSM iterations", minimum=1, maximum=MAX_COUNT)


def uniform_start(rng, shape, norm):
    """A random point of the unit ball of `norm` per image: uniform in the L-inf cube, uniform
    in the L2 ball (a random direction times radius u^(1/d))."""
    if norm == "inf":
        return rng.uniform(-1.0, 1.0, shape).astype(np.float32)
    direction = rng.standard_normal(shape)
    direction /= np.sqrt((direction ** 2).reshape(shape[0], -1).sum(-1)).reshape(-1, 1, 1, 1)
    radius = rng.uniform(0.0, 1.0, (shape[0], 1, 1, 1)) ** (1.0 / np.prod(shape[1:]))
    return (direction * radius).astype(np.float32)


def pgd_graph(model, x, y, eps, step_size, steps, norm="inf", start=None, clip_min=0.0,
              clip_max=1.0):
    """The core on tensors (usable inside a compiled train step). `start` is a random point of
    the unit ball per image (`uniform_start`), scaled by eps; None starts at x."""
    x_adv = x if start is None else ops.clip(x + eps * start, clip_min, clip_max)

    def step(i, x_adv):
        grad, _ = common.loss_gradient(model, x_adv, y)
        x_adv = x_adv + step_size * common.steepest(grad, norm)
        return i + 1, ops.clip(x + project(x_adv - x, eps, norm), clip_min, clip_max)

    _, x_adv = common.while_loop(lambda i, _: i < steps, step, (ops.convert_to_tensor(0), x_adv))
    return x_adv


def _run(model, x, y, eps, step_size, steps, start, norm):
    x_adv = pgd_graph(model, x, y, eps, step_size, steps, norm, start)
    logits = common.logits_of(model, x_adv)
    return x_adv, common.cross_entropy(logits, y), common.predicted(logits) != y


@common.takes_bounds
def pgd(model, x, y, eps=8 / 255, step_size=None, steps=10, norm="inf", random_start=True,
        restarts=1, seed=0, batch_size=256, progress=None, ids=None):
    """Untargeted PGD; with restarts, each example keeps the first restart that fools the model
    (or the highest-loss one).

    Args:
        eps: budget in the chosen norm ('inf' or '2').
        step_size: default 2.5 * eps / steps (Madry et al. 2018).
        steps, restarts: iterations per run and independent random starts.
        seed: seeds the random starts (int); the same seed gives the same result on every
            backend.
        ids: one integer per image naming it in the evaluation's sample (default 0..N-1): its
            random starts derive from (seed, id), whatever batch it is crafted in.

    Returns float32 adversarial images within the budget and in [0, 1].
    """
    eps = common.parse_eps(eps)
    norm = common.check_norm(norm)
    steps = common.check_positive_int("steps", steps)
    restarts = common.check_positive_int("restarts", restarts)
    step_size = 2.5 * eps / steps if step_size is None else common.check_budget(
        "step_size", step_size, 0.0, 1.0 if norm == "inf" else 1e3, low_open=True)
    x = common.check_images(x)
    y = common.check_labels(y, len(x), common.num_classes_of(model, x))
    seed = common.seed_of(seed)
    run = common.compiled(_run, model, batch=("x", "y", "start"))
    scalars = [common.tensor(v, "float32") for v in (eps, step_size)] + [common.tensor(steps)]

    def attack(a, b, batch_ids):
        best, best_loss = a.copy(), np.full(len(a), -np.inf, np.float32)
        fooled = np.zeros(len(a), bool)
        for restart in range(restarts):
            start = (common.per_image(seed, batch_ids, (restart,), lambda draw: uniform_start(
                draw, (1, *a.shape[1:]), norm)[0]) if random_start else np.zeros_like(a))
            # the loop has no early exit: `steps` gradients, then the logits at the end
            counting.add(model, len(a), forward=steps + 1, backward=steps)
            candidate, loss, wrong = (common.numpy(t) for t in run(
                common.tensor(a), common.tensor(b), *scalars, common.tensor(start), norm=norm))
            # keep a restart's result where it fools the model, or where nothing has fooled it
            # yet and its loss is higher
            take = (wrong & ~fooled) | (~fooled & ~wrong & (loss > best_loss))
            best[take], best_loss[take] = candidate[take], loss[take]
            fooled |= wrong
        return best

    return common.batched(attack, x, y, batch_size, progress, ids)


@common.takes_bounds
def ifgsm(model, x, y, eps=8 / 255, steps=10, step_size=None, batch_size=256, progress=None):
    """I-FGSM / BIM: `steps` signed-gradient steps of `step_size` (default eps / 4), projected
    onto the eps ball, no random start."""
    eps = common.parse_eps(eps)
    step_size = eps / 4 if step_size is None else step_size
    return pgd(model, x, y, eps=eps, step_size=step_size, steps=steps, norm="inf",
               random_start=False, restarts=1, batch_size=batch_size, progress=progress)
