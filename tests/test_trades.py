"""TRADES's shared core (`fmfp_tf.training.trades`) on the backend in use: the divergence, the
inner maximisation and the objective, against NumPy."""
import keras
import numpy as np

from fmfp_tf.attacks import common
from fmfp_tf.training import trades

EPS = 8 / 255


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p_logits, q_logits):
    p, q = _softmax(p_logits), _softmax(q_logits)
    return (p * (np.log(p) - np.log(q))).sum(-1)


def _model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((12, 12, 3)),
                             keras.layers.Conv2D(6, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(4)])


def test_the_divergence_and_the_objective_agree_with_numpy():
    rng = np.random.default_rng(0)
    p, q = rng.normal(0, 2, (16, 4)).astype("float32"), rng.normal(0, 2, (16, 4)).astype("float32")
    y = rng.integers(0, 4, 16).astype("int32")
    np.testing.assert_allclose(common.numpy(trades.kl_divergence(p, q)), _kl(p, q), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(common.numpy(trades.kl_divergence(p, p)), 0.0, atol=1e-6)
    cross_entropy = -np.log(_softmax(p)[np.arange(16), y])
    np.testing.assert_allclose(common.numpy(trades.loss(y, p, q, 6.0)),
                               cross_entropy + 6.0 * _kl(p, q), rtol=1e-4, atol=1e-5)


def test_the_inner_maximisation_stays_in_the_ball_and_raises_the_divergence():
    model = _model()
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (32, 12, 12, 3)).astype("float32")
    noise = rng.normal(0, 1, x.shape).astype("float32")
    x_adv = common.numpy(trades.examples(model, x, noise, EPS, EPS / 4, 5))
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    clean = common.predict_logits(model, x)
    start = np.clip(x + trades.NOISE * noise, 0, 1)
    before = _kl(clean, common.predict_logits(model, start))
    after = _kl(clean, common.predict_logits(model, x_adv))
    # every image's divergence grows by orders of magnitude from its start next to x
    assert (after > 10 * before).mean() >= 0.9 and after.mean() > 100 * before.mean()
    # no steps: the start itself
    np.testing.assert_allclose(common.numpy(trades.examples(model, x, noise, EPS, EPS / 4, 0)),
                               start, atol=1e-7)
