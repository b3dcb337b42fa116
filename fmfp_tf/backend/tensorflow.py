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


def local_devices():
    devices = tf.config.list_logical_devices()
    return ([d.name for d in devices], [d.name for d in devices if d.device_type != "CPU"])


class Replicas:
    """A compiled attack over a `tf.distribute.MirroredStrategy` of the first `count` logical
    devices: per-image arguments split into `count` contiguous shares, one per replica, the
    rest passed to every replica; outputs gathered back in order (rank-0 outputs, such as a
    loop's trip count, the largest over the replicas)."""

    def __init__(self, count):
        self.count = count
        self.strategy = tf.distribute.MirroredStrategy(
            devices=local_devices()[0][:count],
            cross_device_ops=tf.distribute.ReductionToOneDevice())

    def scope(self):
        return self.strategy.scope()

    def call(self, run, args, static, positions, model):
        rows = int(tf.nest.flatten(args[positions[0]])[0].shape[0])
        if rows < self.count:
            return run(*args, **static)
        variables = getattr(model, "variables", None) or []
        if variables and not isinstance(getattr(variables[0], "value", None),
                                        tf.distribute.DistributedValues):
            from fmfp_tf.errors import UsageError

            raise UsageError("on TensorFlow the model must be loaded or built inside "
                             "devices.data_parallel(...) (MirroredStrategy's scope), so that "
                             "every replica has its own copy of the variables")
        bounds = [rows * k // self.count for k in range(self.count + 1)]
        args = list(args)
        for index in positions:
            # a per-image argument may be a structure of tensors (APGD's state)
            shares = [tf.nest.map_structure(lambda t, k=k: t[bounds[k]:bounds[k + 1]],
                                            args[index]) for k in range(self.count)]
            args[index] = self.strategy.experimental_distribute_values_from_function(
                lambda context, shares=shares: shares[context.replica_id_in_sync_group])
        out = self.strategy.run(run, args=tuple(args), kwargs=static)
        local = self.strategy.experimental_local_results(out)
        return tf.nest.map_structure(
            lambda *parts: tf.concat(parts, 0) if parts[0].shape.rank else tf.reduce_max(
                tf.stack(parts)), *local)
