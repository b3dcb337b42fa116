"""Counted passes and the fast ensemble: what every attack record's `passes` says, checked against
the model's own calls, and `autoattack-fast`'s stages. No TensorFlow import: these run on every
backend (CI runs them on JAX too)."""
import keras
import numpy as np
import pytest
from keras import ops

from fmfp_tf import attacks
from fmfp_tf.attacks import common, counting

BACKEND = keras.backend.backend()


def toy(images=40, classes=10, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(classes)])
    x = np.random.default_rng(seed).random((images, 8, 8, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x)).argmax(-1).astype("int32")
    return model, x, y


@keras.saving.register_keras_serializable("fmfp_tf_tests")
class CallCounter(keras.layers.Layer):
    """Identity that adds its batch's size to a variable on every call, compiled or not: the
    model's forward passes as the program really ran them (TensorFlow: variables update inside
    tf.function and while loops)."""

    def build(self, shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     dtype="float32", name="calls")

    def call(self, x):
        self.calls.assign_add(ops.cast(ops.shape(x)[0], "float32"))
        return x


@pytest.mark.skipif(BACKEND != "tensorflow", reason="variables update inside compiled loops "
                                                    "on TensorFlow only")
@pytest.mark.parametrize("name, kwargs", [
    ("fgsm", {}), ("pgd", {"steps": 4, "restarts": 2}), ("apgd", {"steps": 5}),
    ("apgd", {"steps": 4, "targeted": True, "target_classes": 3, "loss": "dlr"}),
    ("fab", {"steps": 4, "target_classes": 2}), ("square", {"queries": 60}),
    ("cw_l2", {"max_iterations": 10, "binary_search_steps": 2}),
    ("autoattack", {"steps": 4, "target_classes": 2, "queries": 60}),
    ("autoattack_fast", {"steps": 4, "target_steps": 4, "queries": 60})])
def test_the_counted_forward_passes_are_the_model_calls_that_ran(name, kwargs):
    keras.utils.set_random_seed(0)
    counter = CallCounter()
    model = keras.Sequential([keras.Input((8, 8, 3)), counter, keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    x = np.random.default_rng(1).random((40, 8, 8, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(model(x)).argmax(-1).astype("int32")
    counter.calls.assign(0.0)
    budget = {} if name == "cw_l2" else {"eps": 0.03}
    with counting.counted() as passes:
        getattr(attacks, name)(model, x, y, batch_size=16, **budget, **kwargs)
    # every gradient evaluates the model once (its forward), so the model's own call count is
    # the counted forward passes, on batches of 16, 16 and 8 images
    assert passes.forward == int(keras.ops.convert_to_numpy(counter.calls)), passes
    assert 0 <= passes.backward <= passes.forward
    assert (passes.backward > 0) == (name != "square")  # Square reads outputs only


def test_apgd_counts_a_gradient_per_step_per_image_and_the_counters_nest():
    model, x, y = toy()
    with counting.counted() as outer:
        with counting.counted() as inner:
            attacks.apgd(model, x, y, eps=0.0, steps=5, batch_size=16)
        attacks.fgsm(model, x, y, eps=0.02, batch_size=16)
    # one image to read the number of classes, the clean prediction, then the start and 5
    # steps for each of the 40 images (eps 0: none falls, so none leaves early)
    assert inner.as_dict() == {"forward": 1 + 40 + 40 * 6, "backward": 40 * 6}
    assert outer.as_dict() == {"forward": 281 + 1 + 40, "backward": 240 + 40}
    # outside a counted block nothing is counted and nothing fails
    attacks.fgsm(model, x, y, eps=0.02)


def test_apgd_lets_the_images_it_fooled_go_and_no_result_changes():
    model, x, y = toy(images=160)
    with counting.counted() as together:
        whole = attacks.apgd(model, x, y, eps=0.03, steps=16, batch_size=160)
    with counting.counted() as apart:
        parts = attacks.apgd(model, x, y, eps=0.03, steps=16, batch_size=40)
    fell = common.predict_logits(model, whole).argmax(-1) != y
    assert 20 <= fell.sum() <= 140, fell.sum()
    # an image's steps after its first misclassified point cannot change its result, so its
    # result is the same whoever shares its batch and whenever they leave
    np.testing.assert_array_equal(whole, parts)
    # the images that fell stopped early: fewer than a gradient per step for every image (on
    # JAX a shrinking batch runs padded to a multiple of 32, which saves less)
    for passes in (together, apart):
        assert (~fell).sum() * 17 + fell.sum() <= passes.backward < 160 * 17


def test_square_counts_only_the_queries_it_ran():
    model, x, y = toy()
    with counting.counted() as passes:
        attacks.square(model, x, y, eps=0.0, queries=100, batch_size=16)
    # eps 0 fools nothing: the start (stripes and clean) and 99 queries for each image
    assert passes.as_dict() == {"forward": 1 + 40 * (2 + 99), "backward": 0}
    flipped = (y + 1) % 10  # every image already misclassified: the search stops at once
    with counting.counted() as passes:
        attacks.square(model, x, flipped, eps=0.01, queries=100, batch_size=16)
    assert passes.as_dict() == {"forward": 1 + 40 * 2, "backward": 0}


def test_an_eot_model_counts_every_draw():
    model, x, y = toy(images=8)
    with counting.counted() as passes:
        attacks.fgsm(attacks.eot_model(model, 4), x, y, eps=0.02)
    assert passes.as_dict() == {"forward": 4 + 32, "backward": 32}


class _Masked(keras.layers.Layer):
    """Logits rounded to integers: the input gradient is zero everywhere."""

    def call(self, x):
        return ops.round(x * 4.0)


def test_the_fast_ensemble_runs_square_only_where_gradients_are_masked():
    model, x, y = toy(images=24)
    logged = []
    with counting.counted() as passes:
        attacks.autoattack_fast(model, x, y, eps=0.05, steps=3, target_steps=3, queries=50,
                                log=lambda name, robust: logged.append(name))
    # a model with gradients: Square runs on no image (its 50 queries per image would count
    # more than every other stage together)
    assert logged == ["apgd-ce", "apgd-t", "square"] and passes.forward < 24 * 50
    masked = keras.Sequential([model, _Masked()])
    y_masked = keras.ops.convert_to_numpy(masked(x)).argmax(-1).astype("int32")
    shares = {}
    x_adv = attacks.autoattack_fast(masked, x, y_masked, eps=0.1, steps=3, target_steps=3,
                                    queries=200,
                                    log=lambda name, robust: shares.setdefault(name, robust))
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6
    # APGD has nothing to follow (its random start aside); Square, which reads only outputs,
    # breaks further images
    assert shares["square"] <= shares["apgd-t"] - 2 / 24, shares


def test_the_fast_ensemble_checks_its_settings_and_the_registry_labels_it():
    from fmfp_tf.errors import UsageError
    from fmfp_tf.evaluation import attack_specs

    model, x, y = toy(images=4)
    with pytest.raises(UsageError, match="target_steps"):
        attacks.autoattack_fast(model, x, y, target_steps=0)
    with pytest.raises(UsageError, match="autoattack_fast_steps"):
        attack_specs.AttackSettings(autoattack_fast_steps=0)
    spec = attack_specs.get("autoattack-fast")
    assert "not the standard AutoAttack" in attack_specs.label("autoattack-fast")
    assert spec.in_worst_case and spec.kind == "ensemble"
    settings = attack_specs.AttackSettings()
    planned = spec.planned_passes(spec.params(settings, 8 / 255))
    standard = attack_specs.get("autoattack")
    full = standard.planned_passes(standard.params(settings, 8 / 255))
    # the bound has every image through every stage and all 9 targets (which images are close
    # is known only as it runs), Square, run only where gradients look masked, as its check
    # alone, and the close images' restart: under a fifth of the standard's gradients and a
    # 20th of its forward passes; the tenth is measured on counted runs
    # (benchmarks/fast_autoattack_check.py)
    assert planned.backward * 5 <= full.backward and planned.forward * 20 <= full.forward
    randomized = spec.planned_passes(spec.params(settings, 8 / 255, randomized=True))
    assert randomized.forward >= settings.autoattack_fast_queries  # Square on every image left
    assert "precision" not in spec.params(attack_specs.AttackSettings(precision="bfloat16"),
                                          8 / 255, randomized=True)


def test_an_interrupted_ensemble_keeps_its_passes_with_its_stages(tmp_path):
    from fmfp_tf.evaluation.cells import CellStore

    model, x, y = toy(images=24)
    kwargs = dict(eps=0.01, steps=3, target_classes=2, queries=40, batch_size=8)
    with counting.counted() as whole:
        reference = attacks.autoattack(model, x, y, **kwargs)
    store = CellStore(str(tmp_path))

    class Stop(Exception):
        pass

    def stop_after_fab(name, robust):
        if name == "fab-t":
            raise Stop

    with pytest.raises(Stop), counting.counted():
        attacks.autoattack(model, x, y, stages=store.stages("k"), log=stop_after_fab, **kwargs)
    with counting.counted() as resumed:
        again = attacks.autoattack(model, x, y, stages=store.stages("k"), **kwargs)
    np.testing.assert_array_equal(again, reference)
    # the resumed call ran Square and one prediction; the kept stages' passes count too
    assert resumed.backward == whole.backward
    assert whole.forward <= resumed.forward <= whole.forward + len(x)


def test_a_later_stage_reads_the_share_of_margin_the_earlier_ones_left(tmp_path):
    from fmfp_tf.attacks.autoattack import run_plan
    from fmfp_tf.evaluation.cells import CellStore

    model, x, y = toy(images=24)
    seen = []

    def nudge(model, x, y, eps, seed, batch_size, ids, progress=None):
        return np.clip(x + eps * np.sign(np.cos(np.arange(x[0].size))).reshape(x[0].shape),
                       0.0, 1.0).astype("float32")

    def reader(model, x, y, eps, seed, batch_size, ids, share, progress=None):
        seen.append((ids.copy(), share.copy()))
        return x

    def margins(images):
        z = common.predict_logits(model, images)
        return common.numpy(common.margin(common.tensor(z), common.tensor(y)))

    nudge.planned_passes = reader.planned_passes = lambda kwargs: counting.Passes(1, 0)
    plan = [("nudge", nudge, {}), ("reader", reader, {})]
    out = run_plan(model, x, y, 0.05, plan, stages=CellStore(str(tmp_path)).stages("k"))
    ids, share = seen[0]
    nudged = nudge(model, x, y, 0.05, 0, 8, None)
    expected = np.minimum(margins(nudged) / margins(x), 1.0)
    # the reader attacks the images the nudge left correctly classified, each with the share
    # of its clean margin the nudge's point kept (capped at 1: none moved it further away)
    np.testing.assert_array_equal(ids, np.flatnonzero(expected > 0))
    np.testing.assert_allclose(share, expected[ids], rtol=1e-5)
    assert (share < 1.0).any() and (share == 1.0).any() and (out != x).any()
    # a plan stopped after the nudge and resumed hands the reader the same evidence
    seen.clear()

    class Stop(Exception):
        pass

    def stop(name, robust):
        if name == "nudge":
            raise Stop

    with pytest.raises(Stop):
        run_plan(model, x, y, 0.05, plan, stages=CellStore(str(tmp_path)).stages("j"), log=stop)
    assert not seen
    run_plan(model, x, y, 0.05, plan, stages=CellStore(str(tmp_path)).stages("j"))
    np.testing.assert_allclose(seen[0][1], share, rtol=1e-6)


def test_the_fast_ensemble_restarts_only_the_images_its_evidence_puts_near_the_boundary():
    from fmfp_tf.attacks.fast_autoattack import targets_by_evidence

    model, x, y = toy(images=16)
    kwargs = dict(eps=1e-4, steps=2, target_classes=2, close_targets=2, close_margin=1e-6,
                  close_steps=7, restart_margin=0.15, batch_size=8)  # nothing falls at 1e-4
    share = np.ones(len(x), np.float32)
    with counting.counted() as far:
        targets_by_evidence(model, x, y, share=share, **kwargs)
    share[[1, 4, 9]] = 0.05  # an earlier stage brought these three near the boundary
    with counting.counted() as near:
        targets_by_evidence(model, x, y, share=share, **kwargs)
    # the three, and they alone, get the 7-step restart: a gradient at the start and per step
    assert near.backward - far.backward == 3 * (7 + 1)
