"""Attacks: budgets, ranges, strength, agreement with CleverHans, EOT."""
import numpy as np
import pytest
import tensorflow as tf

from fmfp_tf import attacks
import cleverhans_compat
from fmfp_tf.attacks import common
from fmfp_tf.attacks.rfgsm import rfgsm_graph
from fmfp_tf.errors import UsageError

EPS = 8 / 255


def accuracy(model, x, y):
    return float((np.argmax(model(x, training=False).numpy(), -1) == y).mean())


def test_trained_fixture_is_accurate_enough(trained_model):
    model, x, y = trained_model
    assert accuracy(model, x, y) > 0.6


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "rfgsm", "pgd"])
def test_linf_attacks_respect_budget_and_range_and_lower_accuracy(trained_model, name):
    model, x, y = trained_model
    x_adv = getattr(attacks, name)(model, x, y, eps=EPS)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.2


def test_pgd_at_least_as_strong_as_fgsm_and_l2_budget(trained_model):
    model, x, y = trained_model
    assert accuracy(model, attacks.pgd(model, x, y, eps=EPS, steps=10), y) <= accuracy(
        model, attacks.fgsm(model, x, y, eps=EPS), y)
    x_l2 = attacks.pgd(model, x, y, eps=0.5, norm="2", steps=10, restarts=2)
    norms = np.sqrt(((x_l2 - x) ** 2).reshape(len(x), -1).sum(-1))
    assert norms.max() <= 0.5 + 1e-4 and x_l2.min() >= 0 and x_l2.max() <= 1


def test_restarts_never_weaken_pgd_and_seed_reproduces(trained_model):
    model, x, y = trained_model
    one = attacks.pgd(model, x, y, eps=4 / 255, steps=3, restarts=1, seed=1)
    again = attacks.pgd(model, x, y, eps=4 / 255, steps=3, restarts=1, seed=1)
    np.testing.assert_array_equal(one, again)
    three = attacks.pgd(model, x, y, eps=4 / 255, steps=3, restarts=3, seed=1)
    assert accuracy(model, three, y) <= accuracy(model, one, y)


@pytest.mark.extended
def test_cw_drives_an_undefended_model_to_at_most_5_percent(trained_model):
    model, x, y = trained_model
    x, y = x[:100], y[:100]
    x_adv = attacks.cw_l2(model, x, y, max_iterations=100, binary_search_steps=6,
                          learning_rate=0.05, initial_const=0.1)
    assert accuracy(model, x_adv, y) <= 0.05
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # minimal perturbations: far below the L2 size of an 8/255 L-inf box
    l2 = np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(-1))
    assert np.median(l2) < np.sqrt(x[0].size) * EPS


def test_rfgsm_matches_its_formula(trained_model):
    model, x, y = trained_model
    x, y = tf.constant(x[:8]), tf.constant(y[:8])
    noise = tf.constant(np.random.default_rng(3).standard_normal(x.shape), tf.float32)
    alpha = EPS / 2
    got = rfgsm_graph(model, x, y, EPS, alpha, noise).numpy()
    x_prime = tf.clip_by_value(x + alpha * tf.sign(noise), 0, 1)
    grad, _ = common.loss_gradient(model, x_prime, y)
    expected = tf.clip_by_value(x_prime + (EPS - alpha) * tf.sign(grad), 0, 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-7)


def test_fgsm_and_ifgsm_agree_with_cleverhans(trained_model):
    model, x, y = trained_model
    x, y = x[:64], y[:64]
    ours = attacks.fgsm(model, x, y, eps=EPS)
    theirs = cleverhans_compat.fast_gradient_method(
        model, tf.constant(x), EPS, np.inf, clip_min=0.0, clip_max=1.0, y=y).numpy()
    assert np.mean(np.abs(ours - theirs) < 1e-5) > 0.999
    ours = attacks.ifgsm(model, x, y, eps=EPS, steps=5)
    theirs = cleverhans_compat.basic_iterative_method(
        model, tf.constant(x), EPS, EPS / 4, 5, np.inf, clip_min=0.0, clip_max=1.0, y=y,
        sanity_checks=True).numpy()
    assert np.mean(np.abs(ours - theirs) < 1e-5) > 0.99


def test_eot_attacks_a_randomised_model(trained_model):
    import keras

    from fmfp_tf import FeatureMask

    model, x, y = trained_model
    x, y = x[:32], y[:32]
    inputs = keras.Input(x.shape[1:])
    randomised = keras.Model(inputs, model(FeatureMask(6, seed=0, test_time=True)(inputs)))
    averaged = attacks.eot_model(randomised, samples=8)
    probs = np.exp(averaged(tf.constant(x)).numpy())
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    x_adv = attacks.eot(attacks.pgd, samples=4)(randomised, x, y, eps=EPS, steps=5)
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    adversarial_acc = float((np.argmax(averaged(tf.constant(x_adv)).numpy(), -1) == y).mean())
    clean_acc = float((np.argmax(probs, -1) == y).mean())
    assert adversarial_acc < clean_acc


@pytest.mark.parametrize("bad, match", [
    ({"eps": 2}, "outside"), ({"eps": "8/0"}, "fraction"), ({"eps": "abc"}, "not a number"),
    ({"steps": 0}, "steps"), ({"norm": "1"}, "norm")])
def test_bad_attack_arguments(trained_model, bad, match):
    model, x, y = trained_model
    with pytest.raises(UsageError, match=match):
        attacks.pgd(model, x[:2], y[:2], **bad)


def test_bad_attack_inputs(trained_model):
    model, x, y = trained_model
    bad = x[:2].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN or inf"):
        attacks.fgsm(model, bad, y[:2])
    with pytest.raises(UsageError, match="lie in"):
        attacks.fgsm(model, x[:2] * 255, y[:2])
    with pytest.raises(UsageError, match="labels"):
        attacks.fgsm(model, x[:2], y[:3])


def test_parse_eps():
    assert attacks.parse_eps("8/255") == pytest.approx(8 / 255)
    assert attacks.parse_eps("0.031") == pytest.approx(0.031)
    assert attacks.parse_eps(0.5) == 0.5
