"""Untargeted Carlini-Wagner L2 (Carlini & Wagner 2017), compiled into one program.

Minimises ||x' - x||_2^2 + c * max(Z_y - max_{i != y} Z_i + kappa, 0) over x' = (tanh(w) + 1) / 2
with Adam, and binary-searches c per example. Written from the paper; CleverHans's version
(run on Keras 3 by the tests' `cleverhans_compat`) is the reference it is tested against. The
whole optimisation runs inside one compiled function, so no Python runs per iteration on
TensorFlow and JAX.
"""
import dataclasses
import typing

from keras import ops

from fmfp_tf.attacks import common, counting
from fmfp_tf.settings import MAX_COUNT, Settings, setting


@dataclasses.dataclass(frozen=True)
class CWSettings(Settings):
    """C&W-L2's optimisation (Carlini & Wagner 2017); the defaults are the paper's reading."""

    prefix: typing.ClassVar[str] = "cw"
    iterations: int = setting(100, "Adam steps per binary-search step",
                              minimum=1, maximum=MAX_COUNT)
    binary_search_steps: int = setting(5, "binary-search steps over the constant c",
                                       minimum=1, maximum=MAX_COUNT,
                                       aliases=("--cw-binary-steps",))
    confidence: float = setting(0.0, "logit margin the example must reach", minimum=0.0)
    learning_rate: float = setting(0.01, "Adam's learning rate", above=0.0)
    initial_const: float = setting(0.01, "first constant c of the binary search", above=0.0)


BETA1, BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8


def _to_tanh_space(x):
    return ops.arctanh(ops.clip(x * 2.0 - 1.0, -1.0, 1.0) * 0.999999)


def _from_tanh_space(w):
    return (ops.tanh(w) + 1.0) / 2.0


def _optimise(model, x, onehot, const, best_l2, best_adv, confidence, learning_rate,
              max_iterations, abort_early):
    """One round of Adam at fixed c; returns (best_l2, best_adv, succeeded)."""
    check_every = max(max_iterations // 10, 1)

    def objective(w):
        x_new = _from_tanh_space(w)
        logits = common.logits_of(model, x_new)
        real = ops.sum(onehot * logits, -1)
        other = ops.max(logits - onehot * 1e9, -1)
        l2 = ops.sum(ops.square(x_new - x), axis=(1, 2, 3))
        total = ops.sum(l2 + const * ops.maximum(real - other + confidence, 0.0))
        return total, (x_new, l2, real - other + confidence <= 0.0)

    def body(i, w, m, v, best_l2, best_adv, succeeded, previous, stop):
        loss, (x_new, l2, success), grad = common.value_and_grad(objective, w)
        t = ops.cast(i + 1, "float32")
        m = BETA1 * m + (1 - BETA1) * grad
        v = BETA2 * v + (1 - BETA2) * ops.square(grad)
        step = learning_rate * (m / (1 - BETA1 ** t)) / (ops.sqrt(v / (1 - BETA2 ** t))
                                                          + ADAM_EPSILON)
        # the iterate evaluated above (x_new) is the one scored here
        improved = success & (l2 < best_l2)
        best_l2 = ops.where(improved, l2, best_l2)
        best_adv = ops.where(common.per_example(improved), x_new, best_adv)
        checking = (i % check_every == 0) & abort_early
        stop = checking & (loss > previous * 0.9999)
        previous = ops.where(checking, loss, previous)
        return (i + 1, w - step, m, v, best_l2, best_adv, succeeded | success, previous, stop)

    w0 = _to_tanh_space(x)
    start = (ops.convert_to_tensor(0), w0, ops.zeros_like(x), ops.zeros_like(x), best_l2,
             best_adv, ops.zeros_like(best_l2) > 1.0, ops.convert_to_tensor(1e30, "float32"),
             ops.convert_to_tensor(False))
    out = common.while_loop(lambda i, *s: (i < max_iterations) & ~s[-1], body, start)
    return out[4], out[5], out[6], out[0]


def _attack(model, x, y, confidence, learning_rate, initial_const, binary_search_steps,
            max_iterations, abort_early):
    onehot = ops.one_hot(y, ops.shape(common.logits_of(model, x[:1]))[-1])
    batch_of = ops.ones_like(x[:, 0, 0, 0])
    lower, upper = 0.0 * batch_of, 1e10 * batch_of
    const = initial_const * batch_of
    best_l2, best_adv = 1e10 * batch_of, x
    iterations = ops.convert_to_tensor(0)  # executed, for the pass count (rounds stop early)
    for _ in range(binary_search_steps):
        best_l2, best_adv, succeeded, executed = _optimise(
            model, x, onehot, const, best_l2, best_adv, confidence, learning_rate,
            max_iterations, abort_early)
        iterations = iterations + executed
        # binary search on c: shrink where an example succeeded, grow where it did not
        upper = ops.where(succeeded, ops.minimum(upper, const), upper)
        lower = ops.where(succeeded, lower, ops.maximum(lower, const))
        const = ops.where(upper < 1e9, (lower + upper) / 2.0, const * 10.0)
    return best_adv, iterations


@common.takes_bounds
def cw_l2(model, x, y, confidence=0.0, learning_rate=0.01, initial_const=0.01,
          binary_search_steps=5, max_iterations=100, abort_early=True, batch_size=256,
          progress=None):
    """Untargeted C&W L2 from logits. Examples where no adversarial was found are returned
    unchanged (so they count as robust). Pixels stay in [0, 1] through the tanh change of variables.

    Args:
        confidence: kappa, the logit margin an adversarial must reach.
        learning_rate: Adam's step size on the tanh-space variable.
        initial_const, binary_search_steps: start and number of rounds of the search for c.
        max_iterations: Adam steps per round; abort_early stops a round once the loss stalls.
    """
    confidence = common.check_budget("confidence", confidence, 0.0, 1e6)
    learning_rate = common.check_budget("learning_rate", learning_rate, 0.0, 10.0, low_open=True)
    initial_const = common.check_budget("initial_const", initial_const, 0.0, 1e6, low_open=True)
    binary_search_steps = common.check_positive_int("binary_search_steps", binary_search_steps)
    max_iterations = common.check_positive_int("max_iterations", max_iterations)
    x = common.check_images(x)
    y = common.check_labels(y, len(x), common.num_classes_of(model, x))
    run = common.compiled(_attack, model, batch=("x", "y"))

    def attack(a, b, _):
        x_adv, iterations = run(common.tensor(a), common.tensor(b),
                                common.tensor(confidence, "float32"),
                                common.tensor(learning_rate, "float32"),
                                initial_const=initial_const,
                                binary_search_steps=binary_search_steps,
                                max_iterations=max_iterations, abort_early=bool(abort_early))
        # one gradient per executed Adam step, and the one-image forward that reads the classes
        steps = int(common.numpy(iterations))
        counting.add(model, len(a), forward=steps, backward=steps)
        counting.add(model, 1, forward=1)
        return x_adv

    return common.batched(attack, x, y, batch_size, progress)
