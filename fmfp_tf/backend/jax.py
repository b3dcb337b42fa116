"""JAX: what the layers and attacks need beyond `keras.ops`.

JAX compiles pure functions, so a model's variables enter a compiled attack as arguments (Keras's
`StatelessScope`, as its JAX trainer does) and what the model updates at inference (the seed
state of a layer random at test time) is carried through every loop and gradient explicitly and
written back after the call: the next batch draws new randomness, as it would on TensorFlow.
"""
import contextlib

import jax
from keras import StatelessScope
from keras.src.backend.common.stateless_scope import get_stateless_scope

# (all variables, updated variables) of the model a compiled attack is running on, innermost last
_ACTIVE = []


def is_concrete(x):
    return not isinstance(x, jax.core.Tracer)


def to_numpy(x):
    import numpy as np

    return np.asarray(x)


def gpu_names():
    return [str(device.device_kind) for device in jax.devices() if device.platform == "gpu"]


def _variables_of(model):
    if hasattr(model, "trainable_variables") and hasattr(model, "non_trainable_variables"):
        return list(model.trainable_variables) + list(model.non_trainable_variables), list(
            model.non_trainable_variables)
    return [], []


def _scope_with(updated_values):
    """A scope that reads the active model's variables from the enclosing scope, and its updated
    variables from `updated_values`."""
    everything, updated = _ACTIVE[-1]
    outer = get_stateless_scope()
    fresh = {id(v): value for v, value in zip(updated, updated_values)}
    return StatelessScope([(v, fresh.get(id(v), outer.get_current_value(v)))
                           for v in everything])


def _current_values(scope):
    return [scope.get_current_value(v) for v in _ACTIVE[-1][1]]


def _threading():
    return bool(_ACTIVE and _ACTIVE[-1][1] and get_stateless_scope() is not None)


def value_and_grad(fn, x):
    """(value, aux, d value / d x) for fn(x) -> (scalar value, aux)."""
    if not _threading():
        (value, aux), grad = jax.value_and_grad(fn, has_aux=True)(x)
        return value, aux, grad
    outer = get_stateless_scope()

    def with_state(x, values):
        with _scope_with(values) as scope:
            value, aux = fn(x)
        return value, (aux, _current_values(scope))

    (value, (aux, values)), grad = jax.value_and_grad(with_state, has_aux=True)(
        x, _current_values(outer))
    for variable, new in zip(_ACTIVE[-1][1], values):
        outer.add_update((variable, new))
    return value, aux, grad


def while_loop(cond, body, loop_vars):
    loop_vars = tuple(loop_vars)
    if not _threading():
        return jax.lax.while_loop(lambda v: cond(*v), lambda v: tuple(body(*v)), loop_vars)
    outer = get_stateless_scope()

    def step(carry):
        loop_vars, values = carry
        with _scope_with(values) as scope:
            loop_vars = tuple(body(*loop_vars))
        return loop_vars, _current_values(scope)

    def keep_going(carry):
        with _scope_with(carry[1]):
            return cond(*carry[0])

    loop_vars, values = jax.lax.while_loop(keep_going, step,
                                           (loop_vars, _current_values(outer)))
    for variable, new in zip(_ACTIVE[-1][1], values):
        outer.add_update((variable, new))
    return loop_vars


def compile(fn, model):
    """`fn(*arrays, **python_values)` jitted, with `model`'s variables passed in rather than
    baked into the program as constants; new Python values (a norm, a loss) compile anew."""
    everything, updated = _variables_of(model)

    def pure(values, args, static):
        with StatelessScope(list(zip(everything, values))) as scope:
            _ACTIVE.append((everything, updated))
            try:
                out = fn(*args, **dict(static))
            finally:
                _ACTIVE.pop()
        return out, [scope.get_current_value(v) for v in updated]

    jitted = jax.jit(pure, static_argnums=2)

    def run(*args, **static):
        out, values = jitted([v.value for v in everything], args, tuple(sorted(static.items())))
        for variable, value in zip(updated, values):
            variable.assign(value)
        return out

    return run


def local_devices():
    devices = jax.local_devices()
    return ([str(d) for d in devices], [str(d) for d in devices if d.platform != "cpu"])


class Replicas:
    """A compiled attack over a `keras.distribution.DataParallel` mesh of the first `count`
    local devices: per-image arguments sharded on the batch axis, everything else replicated,
    one program (XLA partitions it). A batch that does not divide evenly runs unsharded."""

    def __init__(self, count):
        import keras

        self.count = count
        self.distribution = keras.distribution.DataParallel(
            devices=keras.distribution.list_devices()[:count])

    def scope(self):
        return contextlib.nullcontext()  # variables are replicated as the program needs them

    def call(self, run, args, static, positions, model):
        import keras

        del model  # its variables enter the program as arguments, replicated as needed
        rows = keras.tree.flatten(args[positions[0]])[0].shape[0]
        if rows % self.count:
            return run(*args, **static)
        args = list(args)
        for index in positions:  # a structure of arrays (APGD's state) is sharded leaf by leaf
            args[index] = keras.tree.map_structure(
                lambda a: keras.distribution.distribute_tensor(
                    a, self.distribution.get_data_layout(a.shape)), args[index])
        return run(*args, **static)
