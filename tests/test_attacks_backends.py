"""The attacks on every Keras backend: these tests import no TensorFlow and run on TensorFlow,
on JAX (beside TensorFlow and without it, in CI) and on PyTorch (`KERAS_BACKEND=torch`)."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from fmfp_tf import FeatureMask, attacks
from fmfp_tf.attacks import common
from fmfp_tf.attacks.fab import project_linf
from fmfp_tf.errors import UsageError

EPS = 8 / 255
BACKEND = keras.backend.backend()


def toy_data(count=160, classes=5, seed=0):
    """Low-contrast class patterns under noise: learnable, and breakable within 8/255."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(-0.04, 0.04, (classes, 12, 12, 3))
    y = np.arange(count) % classes
    x = np.clip(0.5 + patterns[y] + rng.normal(0, 0.03, (count, 12, 12, 3)), 0, 1)
    return x.astype(np.float32), y.astype(np.int32)


@pytest.fixture(scope="module")
def toy():
    x, y = toy_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(5)])
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model, x[:60], y[:60]


def accuracy(model, x, y):
    return float((common.predict_logits(model, x).argmax(-1) == y).mean())


def within(x_adv, x, eps):
    return (x_adv.dtype == np.float32 and np.abs(x_adv - x).max() <= eps + 1e-6
            and x_adv.min() >= 0 and x_adv.max() <= 1)


def test_the_toy_model_is_accurate(toy):
    model, x, y = toy
    assert accuracy(model, x, y) >= 0.9


@pytest.mark.parametrize("name, kwargs", [
    ("fgsm", {}), ("ifgsm", {"steps": 5}), ("rfgsm", {}), ("pgd", {"steps": 10}),
    ("apgd", {"steps": 20}), ("apgd", {"steps": 20, "loss": "dlr"}),
    ("apgd", {"steps": 20, "loss": "dlr", "targeted": True, "target_classes": 3}),
    ("fab", {"steps": 20, "target_classes": 3}), ("square", {"queries": 300}),
    ("autoattack", {"steps": 20, "target_classes": 3, "queries": 200}),
    ("autoattack_fast", {"steps": 10, "target_steps": 10, "queries": 200})])
def test_every_attack_stays_in_budget_and_lowers_accuracy(toy, name, kwargs):
    model, x, y = toy
    x_adv = getattr(attacks, name)(model, x, y, eps=EPS, **kwargs)
    assert within(x_adv, x, EPS)
    assert accuracy(model, x_adv, y) <= accuracy(model, x, y) - 0.3


def test_the_same_seed_gives_the_same_examples(toy):
    model, x, y = toy
    for attack, kwargs in ((attacks.pgd, {"steps": 3, "restarts": 2}),
                           (attacks.apgd, {"steps": 5}), (attacks.square, {"queries": 50}),
                           (attacks.fab, {"steps": 5, "target_classes": 2, "restarts": 2})):
        first = attack(model, x, y, eps=EPS, seed=4, **kwargs)
        np.testing.assert_array_equal(first, attack(model, x, y, eps=EPS, seed=4, **kwargs))


SPLIT_ATTACKS = [("rfgsm", {}), ("pgd", {"steps": 3, "restarts": 2}), ("apgd", {"steps": 5}),
                 ("apgd", {"steps": 5, "loss": "dlr", "targeted": True, "target_classes": 2}),
                 ("fab", {"steps": 5, "target_classes": 2, "restarts": 2}),
                 ("square", {"queries": 60}),
                 ("autoattack", {"steps": 4, "target_classes": 2, "queries": 40}),
                 ("autoattack_fast", {"steps": 4, "target_steps": 4, "queries": 40})]


def _fooled(model, x_adv, y):
    return common.predict_logits(model, x_adv).argmax(-1) != y


@pytest.mark.parametrize("name, kwargs", SPLIT_ATTACKS)
def test_an_images_result_does_not_depend_on_its_batch_or_shard(toy, name, kwargs):
    """Every random draw for an image derives from (seed, its id): batch 60 and batch 7, and
    two shards attacked apart (ids kept), give the same example per image; other ids give
    other draws."""
    model, x, y = toy
    attack = getattr(attacks, name)
    ids = np.arange(100, 160)
    whole = attack(model, x, y, eps=EPS, seed=5, batch_size=60, ids=ids, **kwargs)
    small = attack(model, x, y, eps=EPS, seed=5, batch_size=7, ids=ids, **kwargs)
    shards = np.concatenate([attack(model, x[part], y[part], eps=EPS, seed=5, batch_size=60,
                                    ids=ids[part], **kwargs)
                             for part in (slice(0, 23), slice(23, 60))])
    for other in (small, shards):
        np.testing.assert_array_equal(_fooled(model, other, y), _fooled(model, whole, y))
        np.testing.assert_allclose(other, whole, atol=1e-5)
    if name in ("rfgsm", "pgd", "apgd", "square"):  # (FAB's first run starts at the input)
        moved = attack(model, x, y, eps=EPS, seed=5, batch_size=60, ids=ids + 1000, **kwargs)
        assert np.abs(moved - whole).max() > 1e-3


def test_image_ids_are_checked(toy):
    model, x, y = toy
    for bad in (np.arange(59), -np.arange(60), np.linspace(0, 1, 60)):
        with pytest.raises(UsageError, match="ids"):
            attacks.apgd(model, x, y, eps=EPS, steps=2, ids=bad)


def test_l2_attacks_stay_in_the_l2_ball(toy):
    model, x, y = toy
    for x_adv in (attacks.pgd(model, x, y, eps=0.5, norm="2", steps=5, restarts=2),
                  attacks.apgd(model, x, y, eps=0.5, norm="2", steps=10)):
        assert np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(-1)).max() <= 0.5 + 1e-4
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def _reach(point, w, b, radius):
    """How far <w, .> can move towards the hyperplane <w, .> = b within an L-inf radius (per
    row) in the box."""
    w = w * np.sign((w * point).sum(-1) - b)[:, None]  # now <w, .> must fall
    room = np.where(w > 0, point, 1 - point)
    return (np.abs(w) * np.minimum(np.reshape(radius, (-1, 1)), room)).sum(-1)


def test_fab_projection_is_the_smallest_step_onto_the_hyperplane_in_the_box():
    rng = np.random.default_rng(0)
    point = rng.random((200, 30)).astype(np.float32)
    w = rng.normal(size=(200, 30)).astype(np.float32)
    w[:, :3] = 0.0  # coordinates the hyperplane ignores
    b = (w * point).sum(-1) + rng.normal(0, 6.0, 200).astype(np.float32)
    d = common.numpy(project_linf(*(common.tensor(a) for a in (point, w, b))))
    moved = point + d
    assert moved.min() >= -1e-6 and moved.max() <= 1 + 1e-6 and np.all(d[:, :3] == 0)
    radius = np.abs(d).max(-1)
    gap = np.abs((w * point).sum(-1) - b)
    feasible = _reach(point, w, b, 1.0) >= gap
    assert 20 < feasible.sum() < 200  # both cases occur
    np.testing.assert_allclose((w * moved).sum(-1)[feasible], b[feasible], atol=1e-3)
    # no smaller radius reaches the hyperplane
    assert np.all(_reach(point, w, b, radius * 0.99)[feasible] < gap[feasible])
    # unreachable: the step goes to the box's corner on the hyperplane's side
    far = ~feasible
    np.testing.assert_allclose(_reach(point, w, b, 1.0)[far], np.abs((w * d).sum(-1))[far],
                               rtol=1e-4)


def test_fab_finds_close_examples_and_counts_only_those_within_eps(toy):
    model, x, y = toy
    wide = attacks.fab(model, x, y, eps=0.5, steps=30, target_classes=4)
    changed = np.any(wide != x, axis=(1, 2, 3))
    assert changed.mean() >= 0.9
    assert np.all(common.predict_logits(model, wide[changed]).argmax(-1) != y[changed])
    distances = np.abs(wide - x).reshape(len(x), -1).max(-1)[changed]
    # minimal: the examples sit far inside a budget PGD needs far more of
    assert np.median(distances) < 8 / 255
    tight = attacks.fab(model, x, y, eps=np.median(distances), steps=30, target_classes=4)
    assert within(tight, x, np.median(distances))
    assert accuracy(model, x, y) - accuracy(model, tight, y) < changed.mean()


def test_autoattack_runs_the_standard_components_in_order(toy):
    model, x, y = toy
    seen = []
    x_adv = attacks.autoattack(model, x, y, eps=4 / 255, steps=10, target_classes=3,
                               queries=100, log=lambda name, robust: seen.append((name, robust)))
    assert [name for name, _ in seen] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert accuracy(model, x_adv, y) == pytest.approx(seen[-1][1])


def test_cw_finds_small_l2_examples(toy):
    model, x, y = toy
    x_adv = attacks.cw_l2(model, x[:20], y[:20], max_iterations=50, binary_search_steps=4,
                          learning_rate=0.05, initial_const=0.1)
    assert accuracy(model, x_adv, y[:20]) <= 0.1 and x_adv.min() >= 0 and x_adv.max() <= 1


def test_a_model_random_at_inference_draws_anew_on_every_call_and_eot_attacks_it(toy):
    model, x, y = toy
    randomised = keras.Sequential([keras.Input((12, 12, 3)),
                                   FeatureMask(4, seed=1, test_time=True), model])
    # the compiled forward pass carries the layer's seed state out: two calls differ
    first, second = (common.predict_logits(randomised, x[:8]) for _ in range(2))
    assert not np.allclose(first, second)
    x_adv = attacks.eot(attacks.pgd, samples=4)(randomised, x, y, eps=EPS, steps=5)
    assert within(x_adv, x, EPS)
    averaged = attacks.eot_model(randomised, samples=8)
    assert accuracy(averaged, x_adv, y) < accuracy(averaged, x, y) - 0.2
    seen = []
    attacks.autoattack(randomised, x[:16], y[:16], eps=EPS, version="rand", steps=3,
                       eot_draws=2, log=lambda name, robust: seen.append(name))
    assert seen == ["apgd-ce", "apgd-dlr"]
    # the fast ensemble attacks the average over draws and runs Square on every image left,
    # each draw counted as a pass
    from fmfp_tf.attacks import counting

    seen = []
    with counting.counted() as passes:
        attacks.autoattack_fast(randomised, x[:16], y[:16], eps=EPS, steps=2, target_steps=2,
                                target_classes=1, close_targets=2, queries=20, randomized=True,
                                eot_draws=2, log=lambda name, robust: seen.append(name))
    assert seen == ["apgd-ce", "apgd-t", "square"]
    # every gradient is one of 2 draws, each counted (an image leaves a run once it falls)
    assert passes.backward > 0 and passes.backward % 2 == 0, passes


SAME_ON_ANOTHER_BACKEND = """
import sys, json, numpy as np, keras
sys.path.insert(0, {tests!r})
import fmfp_tf
from fmfp_tf import attacks
from test_attacks_backends import toy_data
x, y = toy_data()
x, y = x[:60], y[:60]
model = keras.saving.load_model({path!r})
acc = lambda a: float((attacks.common.predict_logits(model, a).argmax(-1) == y).mean())
print(json.dumps({{"backend": keras.backend.backend(),
    "apgd": acc(attacks.apgd(model, x, y, eps=4 / 255, steps=20)),
    "autoattack": acc(attacks.autoattack(model, x, y, eps=4 / 255, steps=20, target_classes=3,
                                         queries=100)),
    "autoattack_fast": acc(attacks.autoattack_fast(model, x, y, eps=4 / 255, steps=10,
                                                   target_steps=10))}}))
"""


@pytest.mark.extended
@pytest.mark.skipif(BACKEND != "tensorflow", reason="compares TensorFlow with JAX from TensorFlow")
def test_the_same_model_is_as_robust_under_attack_on_tensorflow_and_on_jax(toy, tmp_path):
    pytest.importorskip("jax")
    import json

    model, _, _ = toy
    path = str(tmp_path / "toy.keras")
    model.save(path)
    script = SAME_ON_ANOTHER_BACKEND.format(tests=os.path.dirname(__file__), path=path)
    results = {}
    for backend in ("tensorflow", "jax"):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=dict(os.environ, KERAS_BACKEND=backend), timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["jax"]["backend"] == "jax"
    for attack in ("apgd", "autoattack", "autoattack_fast"):
        # the same random starts on both: only float rounding differs (within 2 of 60 images)
        assert abs(results["tensorflow"][attack] - results["jax"][attack]) <= 2 / 60 + 1e-9, results


def test_a_model_dropped_by_its_caller_is_freed_with_its_compiled_attacks():
    import gc
    import weakref

    x, y = toy_data(8)
    model = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(5)])
    attacks.apgd(model, x, y, eps=EPS, steps=2)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_bfloat16_attacks_count_only_what_fools_the_float32_model(toy):
    model, x, y = toy
    for attack, kwargs in ((attacks.apgd, {"steps": 10}),
                           (attacks.fab, {"steps": 10, "target_classes": 3}),
                           (attacks.autoattack, {"steps": 10, "target_classes": 3,
                                                 "queries": 50})):
        reference = attack(model, x, y, eps=4 / 255, **kwargs)
        lower = attack(model, x, y, eps=4 / 255, precision="bfloat16", **kwargs)
        assert within(lower, x, 4 / 255)
        # the float32 model decides: as strong as float32 within 3 of 60 images here
        assert abs(accuracy(model, lower, y) - accuracy(model, reference, y)) <= 3 / 60 + 1e-9
    with pytest.raises(attacks.common.UsageError, match="precision"):
        attacks.apgd(model, x, y, precision="float16")
    with pytest.raises(attacks.common.UsageError, match="needs a Keras model"):
        attacks.apgd(lambda images: model(images), x, y, precision="bfloat16")


def test_the_evaluation_passes_bfloat16_to_the_attacks_that_take_it_and_records_it():
    # the attack registry needs no plotting library (CI's bare Keras + JAX environment has none)
    from fmfp_tf.evaluation import attack_specs

    plain = attack_specs.AttackSettings(precision="float32")
    lower = attack_specs.AttackSettings(precision="bfloat16")
    for name in ("apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "autoattack"):
        # float32 cells keep their keys (no new parameter); bfloat16 is recorded where it ran
        assert "precision" not in attack_specs.get(name).params(plain, EPS)
        assert attack_specs.get(name).params(lower, EPS)["precision"] == "bfloat16"
    assert "precision" not in attack_specs.get("autoattack").params(lower, EPS, randomized=True)
    assert "precision" not in attack_specs.get("square").params(lower, EPS)


@pytest.fixture(scope="module")
def imagenet_style():
    """A Keras application taking 0-255 (its preprocessing inside), and the same model seen on
    [0, 1] through a Rescaling layer built by hand."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, classes=5, include_preprocessing=True,
        classifier_activation=None)
    on_unit = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(255.0), model])
    x = (np.random.default_rng(1).random((8, 32, 32, 3)) * 255).astype(np.float32)
    return model, on_unit, x, np.arange(8) % 5


@pytest.mark.parametrize("name, kwargs", [("fgsm", {}), ("apgd", {"steps": 3}),
                                          ("square", {"queries": 20}),
                                          ("autoattack_fast", {"steps": 2, "target_steps": 2,
                                                               "queries": 10})])
def test_bounds_attack_a_model_in_its_own_input_range(imagenet_style, name, kwargs):
    """bounds=(0, 255): examples in 0-255 within eps x 255 levels, and the same examples as the
    attack on the hand-rescaled model in [0, 1] (eps is a share of the range everywhere)."""
    model, on_unit, x, y = imagenet_style
    attack = getattr(attacks, name)
    x_adv = attack(model, x, y, eps=EPS, bounds=(0, 255), **kwargs)
    assert x_adv.dtype == np.float32 and x_adv.min() >= 0 and x_adv.max() <= 255
    assert np.abs(x_adv - x).max() <= 8 + 1e-3
    reference = attack(on_unit, x / 255, y, eps=EPS, **kwargs) * 255
    np.testing.assert_allclose(x_adv, reference, atol=2e-3)


def test_bounds_and_inputs_outside_them_are_one_line_errors(imagenet_style):
    model, _, x, y = imagenet_style
    with pytest.raises(UsageError, match="attack inputs must lie in \\[0, 1\\].*bounds="):
        attacks.fgsm(model, x, y)
    for bad in ((1, 0), (0, float("inf")), "0-255", (0,)):
        with pytest.raises(UsageError, match="bounds must"):
            attacks.fgsm(model, x, y, bounds=bad)
