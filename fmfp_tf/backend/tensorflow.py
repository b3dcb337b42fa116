"""TensorFlow: what the layers and attacks need beyond `keras.ops`."""
import tensorflow as tf


def is_concrete(x):
    # an EagerTensor outside any tf.function / tf.data trace
    return tf.executing_eagerly() and hasattr(x, "numpy") and not tf.is_symbolic_tensor(x)


def to_numpy(x):
    return x.numpy()


def gpu_names():
    return [gpu.name for gpu in tf.config.list_physical_devices("GPU")]


def value_and_grad(fn, x):
    """(value, aux, d value / d x) for fn(x) -> (scalar value, aux)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        value, aux = fn(x)
    # a model with no differentiable path to its input (rounded logits) has a zero gradient,
    # as on JAX and PyTorch, not None
    return value, aux, tape.gradient(value, x,
                                     unconnected_gradients=tf.UnconnectedGradients.ZERO)


def compile(fn, model):
    """`fn(*tensors, **python_values)` as one graph; new Python values (a norm, a loss) trace
    anew, new batch sizes do not."""
    del model  # a traced graph reads the model's variables where they live
    # no AutoGraph: the attacks' loops are explicit (`while_loop`), nothing needs converting
    return tf.function(fn, reduce_retracing=True, autograph=False)


def while_loop(cond, body, loop_vars):
    # every dimension left open: a trace may know a batch size that values computed in the loop
    # (tf.fill of a dynamic size) do not; only the ranks are fixed
    invariants = tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank),
                                       tuple(loop_vars))
    return tf.while_loop(cond, lambda *v: tuple(body(*v)), tuple(loop_vars),
                         shape_invariants=invariants)
