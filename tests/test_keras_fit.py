"""Adversarial training through Keras's `fit` (`fmfp_tf.training.keras_fit`) on the backend in
use: these tests import no TensorFlow and run on TensorFlow, on JAX (beside TensorFlow and
without it, in CI) and on PyTorch; the last one compares TensorFlow with JAX."""
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import types

import keras
import numpy as np
import pytest

from fmfp_tf.attacks import common, pgd
from fmfp_tf.errors import UsageError
from fmfp_tf.training import mart, trades
from fmfp_tf.training.keras_fit import AdversarialModel, RobustProbe

EPS = 16 / 255
CLASSES = 5

# the recipe the backends are compared on, run as a script so that each backend gets a process
RECIPE = textwrap.dedent('''
    import json, sys
    import keras, numpy as np
    from fmfp_tf.attacks import common, pgd
    from fmfp_tf.training.keras_fit import AdversarialModel

    def data(n, seed):
        patterns = np.random.default_rng(0).uniform(-0.15, 0.15, (5, 16, 16, 3))
        rng = np.random.default_rng(seed)
        y = np.arange(n) % 5
        x = np.clip(0.5 + patterns[y] + rng.normal(0, 0.05, (n, 16, 16, 3)), 0, 1)
        return x.astype("float32"), y.astype("int32")

    def model():
        return keras.Sequential([keras.Input((16, 16, 3)),
                                 keras.layers.Conv2D(8, 3, activation="relu"),
                                 keras.layers.Flatten(), keras.layers.Dense(5)])

    def train(method, epochs, seed=0):
        x, y = data(1500, 1)
        keras.utils.set_random_seed(seed)
        net = model()
        steps = {"steps": 3} if method in ("pgd", "trades", "mart") else {}  # others take none
        wrapped = AdversarialModel(net, method=method, eps=16 / 255, **steps) if method else net
        wrapped.compile(keras.optimizers.Adam(3e-3, use_ema=bool(method)),
                        keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        wrapped.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
        return net

    def robust(net):
        x, y = data(300, 2)
        x_adv = pgd(net, x, y, eps=16 / 255, steps=10, restarts=2)
        return (common.predict_logits(net, x_adv).argmax(-1) == y).astype(int).tolist()

    if __name__ == "__main__":
        print(json.dumps(robust(train(sys.argv[1] or None, int(sys.argv[2])))))
''')


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "recipe.py"
    path.write_text(RECIPE)
    sys.path.insert(0, str(path.parent))
    import recipe as module

    yield module
    sys.path.remove(str(path.parent))


def test_adversarial_fit_makes_a_model_robust_on_this_backend(recipe):
    plain = np.mean(recipe.robust(recipe.train(None, 6)))
    trained = recipe.train("nfgsm", 8)
    x, y = recipe.data(300, 2)
    assert (common.predict_logits(trained, x).argmax(-1) == y).mean() >= 0.9
    assert np.mean(recipe.robust(trained)) >= plain + 0.25, keras.backend.backend()


@pytest.mark.parametrize("method", ["fgsm", "pgd", "fast", "nfgsm", "trades", "mart"])
def test_every_method_trains_within_the_budget_of_its_examples(recipe, method):
    """One epoch of each method; its examples stay in [0, 1] and, but for N-FGSM (3 eps by
    design), within eps of the clean images; fgsm, trades and mart train on the clean images
    too (mart and trades on their own objectives)."""
    x, y = recipe.data(128, 1)
    keras.utils.set_random_seed(0)
    steps = {"steps": 2} if method in ("pgd", "trades", "mart") else {}
    wrapped = AdversarialModel(recipe.model(), method=method, eps=EPS, **steps)
    wrapped.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = wrapped.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    examples, labels, weights = (common.numpy(t) if t is not None else None
                                 for t in wrapped._examples((x[:32], y[:32])))
    assert examples.min() >= 0 and examples.max() <= 1
    limit = 3 * EPS if method == "nfgsm" else EPS
    both = method in ("fgsm", "trades", "mart")
    clean = np.concatenate([x[:32], x[:32]]) if both else x[:32]
    assert np.abs(examples - clean).max() <= limit + 1e-5
    if both:
        assert len(labels) == 64 and np.abs(examples[32:] - x[:32]).max() > EPS / 2
        np.testing.assert_array_equal(examples[:32], x[:32])  # the clean half first
    if method == "fgsm":  # clean and crafted halves weighing 0.5 each in the mean loss
        np.testing.assert_allclose(weights, 1.0)
    elif method in ("trades", "mart"):  # its own objective, not the compiled loss, weighs them
        assert weights is None
        logits = wrapped(examples)
        core = {"trades": trades, "mart": mart}[method]
        expected = np.mean(common.numpy(core.loss(labels[:32], logits[:32], logits[32:], 6.0)))
        np.testing.assert_allclose(common.numpy(wrapped.compute_loss(y=labels, y_pred=logits)),
                                   expected, rtol=1e-5)
    else:
        assert weights is None and np.abs(examples - x[:32]).max() > EPS / 2


def test_settings_are_checked_in_one_line(recipe):
    for kwargs, message in (({"method": "mim"}, "at_method"), ({"eps": 2.0}, "eps 2.0"),
                            ({"clean_weight": -0.5}, "clean_weight"),
                            ({"steps": 0}, "at_steps"), ({"beta": 0.0}, "beta"),
                            ({"method": "pgd", "beta": 3.0},
                             "beta = 3.0: method 'pgd' does not read it"),
                            ({"method": "trades", "clean_weight": 0.5},
                             "clean_weight = 0.5: method 'trades' does not read it"),
                            ({"method": "mart", "clean_weight": 0.5},
                             "clean_weight = 0.5: method 'mart' does not read it"),
                            ({"method": "nfgsm", "steps": 3}, "steps = 3: method 'nfgsm'"),
                            ({"method": "fgsm", "step_size": 0.01}, "step_size = 0.01: method")):
        with pytest.raises(UsageError, match=message):
            AdversarialModel(recipe.model(), **kwargs)
    with pytest.raises(UsageError, match="wraps a Keras model"):
        AdversarialModel(lambda x: x)


def test_the_probe_stops_and_restores_the_best_weights_when_robustness_collapses(recipe):
    net = recipe.train("nfgsm", 4)
    x, y = recipe.data(64, 3)
    probe = RobustProbe(x, y, eps=EPS, steps=3, drop=0.05)
    probe.set_model(net)
    probe.on_epoch_end(0)
    best = [w.copy() for w in net.get_weights()]
    assert probe.best > 0.3
    net.set_weights([np.zeros_like(w) for w in best])  # a collapsed epoch: chance at best
    probe.on_epoch_end(1)
    assert net.stop_training and probe.history[1] < probe.best - 0.05
    for restored, kept in zip(net.get_weights(), best):
        np.testing.assert_array_equal(restored, kept)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="run once, from the TensorFlow suite, against a JAX process")
@pytest.mark.extended
def test_the_same_recipe_gives_the_same_robustness_on_tensorflow_and_jax(recipe, tmp_path):
    """N-FGSM + EMA, the same data, model and seed on TensorFlow and on JAX (random streams
    differ): robust accuracy under PGD-10 x 2 restarts on the same 300 images, paired, within
    noise: the images on which they disagree are few and split both ways."""
    pytest.importorskip("jax")
    path = tmp_path / "recipe.py"
    path.write_text(RECIPE)
    runs = {}
    for backend in ("tensorflow", "jax"):
        done = subprocess.run([sys.executable, str(path), "nfgsm", "8"], capture_output=True,
                              text=True, timeout=600,
                              env={**os.environ, "KERAS_BACKEND": backend,
                                   "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert done.returncode == 0, done.stderr[-2000:]
        runs[backend] = np.array(json.loads(done.stdout.strip().splitlines()[-1]), bool)
    tf_only = int((runs["tensorflow"] & ~runs["jax"]).sum())
    jax_only = int((runs["jax"] & ~runs["tensorflow"]).sum())
    # McNemar at 5 %: |b - c| <= 1.96 sqrt(b + c), with a floor for tiny counts
    assert abs(tf_only - jax_only) <= max(6, 1.96 * np.sqrt(tf_only + jax_only)), runs
    assert runs["tensorflow"].mean() >= 0.6 and runs["jax"].mean() >= 0.6


def test_a_registered_method_with_a_keras_builder_trains_through_fit(recipe, monkeypatch):
    """A plugin's method that names a `keras_examples` builder is one registry entry away from
    `fit` on every backend: AdversarialModel resolves it (here: FGSM of half the budget)."""
    from fmfp_tf import defense_registry
    from fmfp_tf.training import keras_fit

    calls = []

    def half_fgsm(settings, model, x, y, seed_generator):
        calls.append(settings.eps)
        return keras_fit.fgsm_examples(dataclasses.replace(settings, eps=settings.eps / 2),
                                       model, x, y, seed_generator)

    module = types.ModuleType("half_fgsm_plugin")
    module.half_fgsm = half_fgsm
    monkeypatch.setitem(sys.modules, "half_fgsm_plugin", module)
    monkeypatch.setitem(defense_registry.ADVERSARIAL_TRAINING._entries, "half",
                        defense_registry.AdversarialTraining(
                            "half", "a plugin's", "half_fgsm_plugin:tf_only",
                            unread=("at_steps",), keras_examples="half_fgsm_plugin:half_fgsm"))
    monkeypatch.setitem(defense_registry.ADVERSARIAL_TRAINING._origins, "half", "test")
    assert "half" in keras_fit.methods()
    wrapped = AdversarialModel(recipe.model(), method="half", eps=EPS)
    x, y = recipe.data(32, 1)
    examples, _, _ = wrapped._examples((x, y))
    distance = np.abs(common.numpy(examples) - x).max()
    assert calls == [EPS] and EPS / 4 < distance <= EPS / 2 + 1e-5
    wrapped.compile(keras.optimizers.Adam(1e-3),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = wrapped.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and len(calls) >= 2
    with pytest.raises(UsageError, match="steps = 3: method 'half' does not read it"):
        AdversarialModel(recipe.model(), method="half", steps=3)
