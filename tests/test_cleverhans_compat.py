"""The CleverHans 4.0.0 compat fixes: each upstream failure still happens, each fix works.

If one of the 'upstream still fails' tests starts failing, CleverHans (or Keras/numpy) changed:
the corresponding fix in fmfp_tf/attacks/cleverhans_compat.py should be revisited.
"""
import importlib.metadata
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from cleverhans.tf2.attacks import carlini_wagner_l2 as upstream_cw
from cleverhans.tf2.attacks import spsa as upstream_spsa
from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method

import cleverhans_compat


@pytest.fixture(scope="module")
def rgb_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])


def images(n=5):
    return np.random.default_rng(0).random((n, 8, 8, 3)).astype(np.float32)


def test_pinned_version():
    assert importlib.metadata.version("cleverhans") == "4.0.0"


def test_upstream_cw_source_still_has_the_patched_patterns():
    source = inspect.getsource(upstream_cw.CarliniWagnerL2._attack)
    assert "const = tf.ones(shape) * self.initial_const" in source
    assert "self.optimizer.variables()" in source


def test_upstream_cw_still_fails_on_keras3(rgb_model):
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        upstream_cw.carlini_wagner_l2(rgb_model, images(), max_iterations=2,
                                      binary_search_steps=1)


def test_upstream_cw_const_bug_without_the_optimizer_fix(rgb_model):
    attack = upstream_cw.CarliniWagnerL2(rgb_model, max_iterations=2, binary_search_steps=1)
    attack.optimizer = cleverhans_compat._Keras3Adam(attack.learning_rate)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        attack.attack(images())


def test_fixed_cw_runs_on_rgb_batches_and_finds_adversarials(rgb_model):
    x = images(6)
    x_adv = cleverhans_compat.carlini_wagner_l2(rgb_model, x, max_iterations=50,
                                                binary_search_steps=3, learning_rate=0.1,
                                                initial_const=1.0, clip_min=0.0, clip_max=1.0)
    assert x_adv.shape == x.shape and x_adv.min() >= 0 and x_adv.max() <= 1
    before = np.argmax(rgb_model(x).numpy(), -1)
    after = np.argmax(rgb_model(x_adv).numpy(), -1)
    assert (before != after).mean() >= 0.5
    assert upstream_cw.tf is tf  # the module is restored after the call


def test_upstream_bim_sanity_checks_still_fail_and_fix_works(rgb_model):
    x = tf.constant(images())
    with pytest.raises((ValueError, TypeError)):
        basic_iterative_method(rgb_model, x, 0.1, 0.02, 3, np.inf, clip_min=0.0, clip_max=1.0,
                               sanity_checks=True)
    out = cleverhans_compat.basic_iterative_method(rgb_model, x, 0.1, 0.02, 3, np.inf,
                                                   clip_min=0.0, clip_max=1.0)
    assert np.abs(out.numpy() - x.numpy()).max() <= 0.1 + 1e-6


def test_upstream_spsa_still_rejects_lr_and_fix_works(rgb_model):
    x = tf.constant(images(1))
    y = tf.constant([0])
    with pytest.raises((TypeError, ValueError)):
        upstream_spsa.spsa(rgb_model, x, y, 0.1, 1, spsa_samples=8, spsa_iters=1)
    out = cleverhans_compat.spsa(rgb_model, x, y, 0.1, 2, spsa_samples=8, spsa_iters=1,
                                 clip_min=0.0, clip_max=1.0)
    assert np.abs(out.numpy() - x.numpy()).max() <= 0.1 + 1e-6
    assert upstream_spsa.SPSAAdam is not cleverhans_compat._SPSAAdam
