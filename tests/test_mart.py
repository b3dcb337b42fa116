"""MART's shared core (`fmfp_tf.training.mart`) on the backend in use: the objective against a
NumPy transcription of the paper's formula, and the inner maximisation."""
import numpy as np

from fmfp_tf.attacks import common
from fmfp_tf.training import mart, trades
from tests.test_trades import _model, _softmax

EPS = 8 / 255


def _numpy_mart(y, clean_logits, adversarial_logits, beta):
    """Wang et al. 2020, eq. (8), per example, written out class by class."""
    p, q = _softmax(clean_logits), _softmax(adversarial_logits)
    out = []
    for i, label in enumerate(y):
        wrong = max(q[i, k] for k in range(q.shape[1]) if k != label)
        boosted = -np.log(q[i, label]) - np.log(1.0001 - wrong)
        kl = sum(p[i, k] * (np.log(p[i, k]) - np.log(q[i, k])) for k in range(p.shape[1]))
        out.append(boosted + beta * kl * (1.0000001 - p[i, label]))
    return np.array(out)


def test_the_objective_agrees_with_the_papers_formula():
    rng = np.random.default_rng(0)
    p, q = rng.normal(0, 2, (16, 5)).astype("float32"), rng.normal(0, 2, (16, 5)).astype("float32")
    y = rng.integers(0, 5, 16).astype("int32")
    np.testing.assert_allclose(common.numpy(mart.loss(y, p, q, 6.0)), _numpy_mart(y, p, q, 6.0),
                               rtol=1e-4, atol=1e-5)
    # an image the model gets right with certainty keeps only its boosted cross-entropy
    sure = np.array([[30.0, 0, 0, 0, 0]], "float32")
    np.testing.assert_allclose(common.numpy(mart.loss(np.array([0], "int32"), sure, q[:1], 6.0)),
                               _numpy_mart([0], sure, q[:1], 0.0), rtol=1e-4)


def test_the_inner_maximisation_stays_in_the_ball_and_raises_the_loss():
    model = _model()
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (32, 12, 12, 3)).astype("float32")
    y = common.predict_logits(model, x).argmax(-1).astype("int32")
    noise = rng.normal(0, 1, x.shape).astype("float32")
    x_adv = common.numpy(mart.examples(model, x, y, noise, EPS, EPS / 4, 5))
    assert np.abs(x_adv - x).max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1

    def loss(images):
        return common.numpy(common.cross_entropy(common.predict_logits(model, images), y))

    assert (loss(x_adv) > loss(x)).mean() >= 0.9
    # no steps: the start, x plus the reference's 0.001 N(0, 1)
    np.testing.assert_allclose(common.numpy(mart.examples(model, x, y, noise, EPS, EPS / 4, 0)),
                               np.clip(x + trades.NOISE * noise, 0, 1), atol=1e-6)
