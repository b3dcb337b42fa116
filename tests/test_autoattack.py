"""APGD, Square and the AutoAttack-style ensemble: budgets, strength, targets, seeds, no gradients."""
import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from fmfp_tf import attacks
from fmfp_tf.errors import UsageError

EPS = 4 / 255
# the package exports the functions under the modules' names
apgd_module = importlib.import_module("fmfp_tf.attacks.apgd")
square_module = importlib.import_module("fmfp_tf.attacks.square")


def accuracy(model, x, y):
    return float((np.argmax(model(x, training=False).numpy(), -1) == y).mean())


def within_budget(x_adv, x, eps, norm="inf"):
    if norm == "inf":
        distance = np.abs(x_adv - x).reshape(len(x), -1).max(-1)
    else:
        distance = np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(-1))
    return (distance <= eps + 1e-5).all() and x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_checkpoints_follow_the_paper_schedule():
    # 22 % of the budget, then 3 % less each time, never below 6 %
    assert apgd_module.checkpoint_lengths(100)[:8] == [22, 19, 16, 13, 10, 7, 6, 6]
    assert sum(apgd_module.checkpoint_lengths(100)) >= 100


def test_dlr_losses_on_known_logits():
    logits = tf.constant([[5.0, 3.0, 1.0, 0.0], [1.0, 4.0, 2.0, 0.0]])
    y = tf.constant([0, 0])
    # correct: -(5 - 3) / (5 - 1); wrong: -(1 - 4) / (4 - 1)
    np.testing.assert_allclose(apgd_module.dlr_loss(logits, y).numpy(), [-0.5, 1.0], rtol=1e-5)
    target = tf.constant([1, 2])
    # -(5 - 3) / (5 - (1 + 0) / 2); -(1 - 2) / (4 - (1 + 0) / 2)
    np.testing.assert_allclose(apgd_module.targeted_dlr_loss(logits, y, target).numpy(),
                               [-2 / 4.5, 1 / 3.5], rtol=1e-5)


def test_apgd_ce_is_at_least_as_strong_as_pgd20(trained_model):
    model, x, y = trained_model
    x, y = x[:120], y[:120]
    pgd_accuracy = accuracy(model, attacks.pgd(model, x, y, eps=EPS, steps=20), y)
    x_adv = attacks.apgd(model, x, y, eps=EPS, loss="ce", steps=50)
    assert within_budget(x_adv, x, EPS)
    assert accuracy(model, x_adv, y) <= pgd_accuracy
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.1


@pytest.mark.parametrize("kwargs", [{"loss": "dlr"}, {"norm": "2", "eps": 0.3},
                                    {"loss": "ce", "restarts": 2}])
def test_apgd_variants_stay_in_budget_and_range(trained_model, kwargs):
    model, x, y = trained_model
    kwargs = {"eps": EPS, **kwargs}
    x_adv = attacks.apgd(model, x[:40], y[:40], steps=10, **kwargs)
    assert x_adv.dtype == np.float32
    assert within_budget(x_adv, x[:40], kwargs["eps"], kwargs.get("norm", "inf"))


def test_targeted_apgd_moves_predictions_to_the_target(trained_model):
    model, x, y = trained_model
    x, y = x[:80], y[:80]
    logits = model(x, training=False).numpy()
    correct = logits.argmax(-1) == y
    second = np.argsort(-logits, axis=-1, kind="stable")[:, 1]  # the one target with 1 class
    x_adv = attacks.apgd(model, x, y, eps=2 * EPS, targeted=True, target_classes=1, steps=50)
    assert within_budget(x_adv, x, 2 * EPS)
    predicted = model(x_adv, training=False).numpy().argmax(-1)
    fooled = correct & (predicted != y)
    assert fooled.sum() >= 10
    assert (predicted[fooled] == second[fooled]).mean() >= 0.8


def test_the_same_seed_gives_the_same_examples(trained_model):
    model, x, y = trained_model
    x, y = x[:32], y[:32]
    first = attacks.apgd(model, x, y, eps=EPS, steps=5, seed=3)
    np.testing.assert_array_equal(first, attacks.apgd(model, x, y, eps=EPS, steps=5, seed=3))
    assert not np.array_equal(first, attacks.apgd(model, x, y, eps=EPS, steps=5, seed=4))
    squared = attacks.square(model, x, y, eps=EPS, queries=30, seed=3)
    np.testing.assert_array_equal(squared, attacks.square(model, x, y, eps=EPS, queries=30,
                                                          seed=3))


class GradientRefused(keras.layers.Layer):
    """The identity whose gradient raises: any attack that asks for a gradient fails."""

    def call(self, inputs):
        @tf.custom_gradient
        def identity(t):
            def grad(upstream):
                raise RuntimeError("gradient requested")

            return tf.identity(t), grad

        return identity(inputs)


def test_square_never_reads_a_gradient_and_still_fools_the_model(trained_model):
    model, x, y = trained_model
    x, y = x[:60], y[:60]
    guarded = keras.Sequential([keras.Input(x.shape[1:]), GradientRefused(), model])
    with pytest.raises(Exception, match="gradient requested"):
        attacks.fgsm(guarded, x[:2], y[:2], eps=EPS)
    x_adv = attacks.square(guarded, x, y, eps=2 * EPS, queries=300)
    assert within_budget(x_adv, x, 2 * EPS)
    assert accuracy(model, x_adv, y) < accuracy(model, x, y) - 0.1


def test_square_schedule_shrinks_the_window():
    shares = [square_module.window_share(q, 5000) for q in (0, 10, 100, 1000, 4999)]
    assert shares[0] == pytest.approx(0.8) and shares == sorted(shares, reverse=True)
    assert shares[-1] == pytest.approx(0.8 / 512)


def test_autoattack_is_the_per_image_worst_case(trained_model):
    model, x, y = trained_model
    x, y = x[:60], y[:60]
    seen = []
    x_adv = attacks.autoattack(model, x, y, eps=EPS, steps=20, target_classes=2, queries=100,
                               log=lambda name, robust: seen.append((name, robust)))
    assert [name for name, _ in seen] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    robust = [r for _, r in seen]
    assert robust == sorted(robust, reverse=True)        # each attack only removes survivors
    assert accuracy(model, x_adv, y) == pytest.approx(robust[-1])
    assert within_budget(x_adv, x, EPS)
    alone = accuracy(model, attacks.apgd(model, x, y, eps=EPS, steps=20), y)
    assert accuracy(model, x_adv, y) <= alone


def test_bad_arguments_and_labels_are_named(trained_model):
    model, x, y = trained_model
    with pytest.raises(UsageError, match="loss"):
        attacks.apgd(model, x[:2], y[:2], loss="hinge")
    with pytest.raises(UsageError, match="target_classes = 50"):
        attacks.apgd(model, x[:2], y[:2], targeted=True, target_classes=50)
    with pytest.raises(UsageError, match="labels must lie in 0..42"):
        attacks.square(model, x[:2], np.array([0, 99]))
    with pytest.raises(UsageError, match="version"):
        attacks.autoattack(model, x[:2], y[:2], version="plus")


class NoisyDefense:
    """Built lazily: a third defense layer, known to nothing but its base class."""

    @staticmethod
    def layer():
        from fmfp_tf.layers.base import RandomImageDefense

        class AddNoise(RandomImageDefense):
            def draw_transformation(self, images, seed):
                return {"noise": 0.01 * self.backend.random.normal(self.backend.shape(images),
                                                                   seed=seed)}

            def apply_transformation(self, images, transformation):
                return images + transformation["noise"]

        return AddNoise(size=1, test_time=True, seed=0)


def test_any_defense_random_at_inference_gets_eot_and_the_rand_ensemble(trained_model):
    from fmfp_tf.evaluation import attack_specs, threat_models

    model, x, y = trained_model
    noisy = keras.Sequential([keras.Input(x.shape[1:]), NoisyDefense.layer(), model])
    assert threat_models.is_randomised_at_test_time(noisy)
    assert not threat_models.is_randomised_at_test_time(model)
    spec = attack_specs.get("autoattack")
    assert spec.params(attack_specs.AttackSettings(), EPS, randomized=True)["version"] == "rand"
    seen = []
    x_adv = attacks.autoattack(noisy, x[:16], y[:16], eps=EPS, version="rand", steps=3,
                               log=lambda name, robust: seen.append(name))
    assert seen == ["apgd-ce", "apgd-dlr"] and within_budget(x_adv, x[:16], EPS)


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "rfgsm", "pgd", "cw_l2", "apgd", "square",
                                  "autoattack"])
def test_every_attack_names_a_label_outside_the_models_classes(trained_model, name):
    model, x, y = trained_model
    with pytest.raises(UsageError, match=r"labels must lie in 0..42; got 0..43"):
        getattr(attacks, name)(model, x[:2], np.array([0, 43]))


def test_a_first_batch_of_one_image_does_not_fix_the_batch_size():
    # the evaluation hands the attacks subsets of any size, a single image included: a compiled
    # attack traced on one image must give a batch of three exactly what it gives when traced
    # on three first
    def model():
        keras.utils.set_random_seed(4)
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                 keras.layers.Dense(5)])

    rng = np.random.default_rng(0)
    one, three = rng.random((1, 8, 8, 1)).astype(np.float32), rng.random(
        (3, 8, 8, 1)).astype(np.float32)
    labels = np.arange(3) % 5
    runs = {"square": lambda m, x, y: attacks.square(m, x, y, eps=0.1, queries=20, seed=1),
            "apgd": lambda m, x, y: attacks.apgd(m, x, y, eps=0.1, steps=4, loss="dlr", seed=1)}
    for name, run in runs.items():
        fresh = run(model(), three, labels)
        warmed = model()
        first = run(warmed, one, labels[:1])
        after = run(warmed, three, labels)
        assert first.shape == one.shape and after.shape == three.shape, name
        np.testing.assert_allclose(after, fresh, atol=1e-6, err_msg=name)
        assert np.abs(after - three).max() <= 0.1 + 1e-6, name
        assert not np.array_equal(after, three), name  # the attack moved the images