"""CleverHans 4.0.0 on Keras 3 and numpy 2: the few fixes it needs, applied without copying it.

CleverHans is unmaintained; on current TensorFlow / Keras 3 / numpy 2 these fail:

1. `carlini_wagner_l2`: resets its Adam state by zeroing every `optimizer.variables()`; in Keras 3
   `variables` is a property (a list), and it also holds the learning rate, which zeroing would
   set to 0 (the attack would then never move). Fix: give the attack an Adam whose `variables` is
   a callable list of the state to reset only (the step counter and the moments).
2. `carlini_wagner_l2`: builds its per-example constant c as `tf.ones(shape) * initial_const`
   with `shape` the image batch's shape (upstream issue #1205), which cannot broadcast against the
   per-example losses of shape (batch,). Fix: inside that module only, `tf.ones` of a rank > 1
   shape returns the per-example shape (batch,); the constant is the only such call there.
3. `projected_gradient_descent` / `basic_iterative_method(sanity_checks=True)`: `np.all` over a
   list of tensors of different shapes raises on numpy 2. Fix: do the same checks here, then call
   upstream with `sanity_checks=False`.
4. `spsa`: constructs `SPSAAdam(lr=...)`, which Keras 3 optimizers reject. Fix: an `SPSAAdam`
   subclass that maps `lr` to `learning_rate` and keeps the `lr` attribute SPSA reads.

`tests/test_cleverhans_compat.py` checks that each upstream failure still happens without the fix
and that each fixed call works, so an upstream change is noticed at once.
"""
import contextlib
import types

import keras
import numpy as np
import tensorflow as tf
from cleverhans.tf2.attacks import carlini_wagner_l2 as _cw_module
from cleverhans.tf2.attacks import spsa as _spsa_module
from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method as _bim
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method as _fgm
from cleverhans.tf2.attacks.projected_gradient_descent import (
    projected_gradient_descent as _pgd,
)

from fmfp_tf.errors import UsageError


class _CallableList(list):
    """A list that also answers `()` with itself: Keras 2's `variables()` and Keras 3's `variables`."""

    def __call__(self):
        return list(self)


class _Keras3Adam(keras.optimizers.Adam):
    @property
    def variables(self):
        learning_rate = getattr(self, "_learning_rate", None)
        return _CallableList(v for v in super().variables if v is not learning_rate)


def _per_example_ones(shape, *args, **kwargs):
    shape = tf.TensorShape(shape)
    if shape.rank is not None and shape.rank > 1:
        shape = shape[:1]
    return tf.ones(shape, *args, **kwargs)


@contextlib.contextmanager
def _per_example_const():
    """Within the block, CleverHans's C&W module sees a `tf` whose `ones` is per-example."""
    original = _cw_module.tf
    namespace = types.SimpleNamespace(**{k: getattr(tf, k) for k in dir(tf) if not k.startswith("__")})
    namespace.ones = _per_example_ones
    _cw_module.tf = namespace
    try:
        yield
    finally:
        _cw_module.tf = original


def _sanity_checks(x, eps, eps_iter, clip_min, clip_max):
    """The checks upstream's `sanity_checks=True` means to make, without its numpy 2 failure."""
    if eps_iter > eps:
        raise UsageError(f"eps_iter {eps_iter} must not exceed eps {eps}")
    x = np.asarray(x)
    if clip_min is not None and np.any(x < clip_min):
        raise UsageError(f"input below clip_min {clip_min}")
    if clip_max is not None and np.any(x > clip_max):
        raise UsageError(f"input above clip_max {clip_max}")


def carlini_wagner_l2(model_fn, x, y=None, **kwargs):
    """CleverHans's C&W L2, fixed for Keras 3 and batches of RGB images.

    As upstream, a given `y` is a *target* (targeted attack); leave y=None for the untargeted
    attack, which uses the model's own predictions as the labels to move away from.
    """
    attack = _cw_module.CarliniWagnerL2(model_fn, y=y, **kwargs)
    attack.optimizer = _Keras3Adam(attack.learning_rate)
    with _per_example_const():
        return attack.attack(np.asarray(x, np.float32))


def projected_gradient_descent(model_fn, x, eps, eps_iter, nb_iter, norm, clip_min=None,
                               clip_max=None, sanity_checks=True, **kwargs):
    """CleverHans's PGD with its sanity checks done here (they fail on numpy 2 upstream)."""
    if sanity_checks:
        _sanity_checks(x, eps, eps_iter, clip_min, clip_max)
    return _pgd(model_fn, x, eps, eps_iter, nb_iter, norm, clip_min=clip_min,
                clip_max=clip_max, sanity_checks=False, **kwargs)


def basic_iterative_method(model_fn, x, eps, eps_iter, nb_iter, norm, clip_min=None,
                           clip_max=None, sanity_checks=True, **kwargs):
    """CleverHans's BIM (PGD without random start) with working sanity checks."""
    if sanity_checks:
        _sanity_checks(x, eps, eps_iter, clip_min, clip_max)
    return _bim(model_fn, x, eps, eps_iter, nb_iter, norm, clip_min=clip_min,
                clip_max=clip_max, sanity_checks=False, **kwargs)


def fast_gradient_method(model_fn, x, eps, norm, **kwargs):
    """CleverHans's FGM; it already works on Keras 3 (sanity_checks defaults to False)."""
    return _fgm(model_fn, x, eps, norm, **kwargs)


class _SPSAAdam(_spsa_module.SPSAAdam):
    def __init__(self, lr=0.01, delta=0.01, num_samples=128, num_iters=1,
                 compare_to_analytic_grad=False):
        keras.optimizers.Adam.__init__(self, learning_rate=lr)
        self.lr = lr
        if num_samples % 2:
            raise UsageError(f"spsa_samples must be even; got {num_samples}")
        self._delta = delta
        self._num_samples = num_samples // 2  # SPSA mirrors each sample (+delta / -delta)
        self._num_iters = num_iters
        self._compare_to_analytic_grad = compare_to_analytic_grad


@contextlib.contextmanager
def _spsa_optimizer():
    original = _spsa_module.SPSAAdam
    _spsa_module.SPSAAdam = _SPSAAdam
    try:
        yield
    finally:
        _spsa_module.SPSAAdam = original


def spsa(model_fn, x, y, eps, nb_iter, **kwargs):
    """CleverHans's gradient-free SPSA attack (Uesato et al. 2018), fixed for Keras 3."""
    with _spsa_optimizer():
        return _spsa_module.spsa(model_fn, x, y, eps, nb_iter, **kwargs)
