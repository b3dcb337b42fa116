"""Untargeted Carlini-Wagner L2 (Carlini & Wagner 2017), compiled into one TensorFlow graph.

Minimises ||x' - x||_2^2 + c * max(Z_y - max_{i != y} Z_i + kappa, 0) over x' = (tanh(w) + 1) / 2
with Adam, and binary-searches c per example. Written from the paper; CleverHans's version
(through `cleverhans_compat`) is the reference it is tested against. The whole optimisation runs
inside one `tf.function`, so no Python runs per iteration.
"""
import tensorflow as tf

from fmfp_tf.attacks import common


def _to_tanh_space(x):
    return tf.atanh(tf.clip_by_value(x * 2.0 - 1.0, -1.0, 1.0) * 0.999999)


def _from_tanh_space(w):
    return (tf.tanh(w) + 1.0) / 2.0


@tf.function(reduce_retracing=True)
def _compiled(model, x, y, confidence, learning_rate, initial_const, binary_search_steps,
              max_iterations, abort_early):
    batch = tf.shape(x)[0]
    axes = list(range(1, len(x.shape)))
    num_classes = tf.shape(common.logits_of(model, x[:1]))[-1]
    onehot = tf.one_hot(y, num_classes)
    w0 = _to_tanh_space(x)
    lower = tf.zeros([batch])
    upper = tf.fill([batch], 1e10)
    const = tf.fill([batch], initial_const)
    best_l2 = tf.fill([batch], 1e10)
    best_adv = x
    beta1, beta2, epsilon = 0.9, 0.999, 1e-8
    check_every = max(max_iterations // 10, 1)

    for _ in range(binary_search_steps):
        w = w0
        m = tf.zeros_like(x)
        v = tf.zeros_like(x)
        succeeded = tf.zeros([batch], tf.bool)
        previous = tf.constant(1e30)
        for iteration in tf.range(max_iterations):
            with tf.GradientTape() as tape:
                tape.watch(w)
                x_new = _from_tanh_space(w)
                logits = common.logits_of(model, x_new)
                real = tf.reduce_sum(onehot * logits, -1)
                other = tf.reduce_max(logits - onehot * 1e9, -1)
                margin = tf.maximum(real - other + confidence, 0.0)
                l2 = tf.reduce_sum(tf.square(x_new - x), axis=axes)
                loss = tf.reduce_sum(l2 + const * margin)
            grad = tape.gradient(loss, w)
            t = tf.cast(iteration + 1, tf.float32)
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * tf.square(grad)
            m_hat = m / (1 - tf.pow(beta1, t))
            v_hat = v / (1 - tf.pow(beta2, t))
            # the iterate evaluated above (x_new) is the one scored here
            success = (real - other + confidence) <= 0.0
            improved = success & (l2 < best_l2)
            best_l2 = tf.where(improved, l2, best_l2)
            best_adv = tf.where(tf.reshape(improved, [-1] + [1] * len(axes)), x_new, best_adv)
            succeeded = succeeded | success
            w = w - learning_rate * m_hat / (tf.sqrt(v_hat) + epsilon)
            if abort_early and iteration % check_every == 0:
                if loss > previous * 0.9999:
                    break
                previous = loss
        # binary search on c: shrink where an example succeeded, grow where it did not
        upper = tf.where(succeeded, tf.minimum(upper, const), upper)
        lower = tf.where(succeeded, lower, tf.maximum(lower, const))
        const = tf.where(upper < 1e9, (lower + upper) / 2.0, const * 10.0)
    return best_adv


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
    return common.batched(
        lambda a, b: _compiled(model, a, b, tf.constant(confidence, tf.float32),
                               tf.constant(learning_rate, tf.float32),
                               float(initial_const), binary_search_steps, max_iterations,
                               bool(abort_early)),
        x, y, batch_size, progress,
    )
