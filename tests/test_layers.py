"""Behaviour of FeatureMask and FeaturePadding on the current Keras backend.

No TensorFlow import: `.ci/run` runs this file on TensorFlow, on JAX beside TensorFlow and on JAX
alone (and it runs on PyTorch where torch is installed: `KERAS_BACKEND=torch pytest ...`). The
tests that need `tf.data` or `tf.function` skip when TensorFlow is absent.
"""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from fmfp_tf import FeatureMask, FeaturePadding

BACKEND = keras.backend.backend()
# chi-square critical value, 35 degrees of freedom, alpha = 0.001
CHI2_35_0_999 = 66.62
LAYERS = [FeatureMask, FeaturePadding]


def arr(x):
    return keras.ops.convert_to_numpy(x)


def ones(shape=(6, 12, 12, 3)):
    return np.ones(shape, np.float32)


def square_positions(out):
    """(top, left, height, width) of the zeroed region of each image (channels_last)."""
    positions = []
    for image in out:
        hidden = np.argwhere(image[..., 0] == 0)
        top, left = hidden.min(axis=0)
        bottom, right = hidden.max(axis=0)
        positions.append((top, left, bottom - top + 1, right - left + 1))
    return positions


def bilinear_reference(image, height, width):
    """Half-pixel-centre bilinear resize of one HWC image in NumPy (what tf.image.resize does
    without antialiasing), independent of the layer's matrix formulation."""
    def axis(out_size, in_size):
        source = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, in_size - 1), source - low

    r_lo, r_hi, r_w = axis(height, image.shape[0])
    c_lo, c_hi, c_w = axis(width, image.shape[1])
    rows = image[r_lo] * (1 - r_w)[:, None, None] + image[r_hi] * r_w[:, None, None]
    return rows[:, c_lo] * (1 - c_w)[None, :, None] + rows[:, c_hi] * c_w[None, :, None]


def test_mask_zeroes_exactly_one_square_per_image_and_channel():
    out = arr(FeatureMask(4, seed=3)(ones(), training=True))
    assert ((out == 0).sum(axis=(1, 2)) == 16).all()  # per image, per channel
    assert set(np.unique(out)) == {0.0, 1.0}
    for top, left, height, width in square_positions(out):
        assert (height, width) == (4, 4)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_mask_positions_cover_the_image_uniformly():
    size, side, n = 3, 8, 3600
    out = arr(FeatureMask(size, seed=11)(ones((n, side, side, 1)), training=True))
    counts = np.zeros((side - size + 1, side - size + 1))
    for top, left, _, _ in square_positions(out):
        counts[top, left] += 1
    expected = n / counts.size
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.min() > 0  # every admissible corner, including row 0 and the last row
    assert chi2 < CHI2_35_0_999, chi2


def test_positions_differ_across_the_batch_and_follow_the_seed():
    a = arr(FeatureMask(4, seed=5)(ones((16, 20, 20, 1)), training=True))
    b = arr(FeatureMask(4, seed=5)(ones((16, 20, 20, 1)), training=True))
    c = arr(FeatureMask(4, seed=6)(ones((16, 20, 20, 1)), training=True))
    assert len(set(square_positions(a))) > 8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_consecutive_calls_draw_new_positions():
    layer = FeatureMask(4, seed=5)
    first = arr(layer(ones(), training=True))
    second = arr(layer(ones(), training=True))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_when_the_layer_acts(layer_class):
    """Identity inside a model unless training; explicit training wins; on its own it acts."""
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    layer = layer_class(6, seed=1)
    np.testing.assert_array_equal(arr(layer(x, training=False)), x)
    assert not np.array_equal(arr(layer(x, training=True)), x)
    assert not np.array_equal(arr(layer(x)), x)  # on its own, as in ds.map(layer)
    dense = keras.layers.Dense(3)
    inputs = keras.Input((16, 16, 3))
    functional = keras.Model(inputs, dense(keras.layers.Flatten()(layer(inputs))))
    bare = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), dense])
    sequential = keras.Sequential([keras.Input((16, 16, 3)), layer])
    expected = arr(bare(x))
    np.testing.assert_array_equal(arr(functional(x)), expected)
    np.testing.assert_array_equal(arr(functional(x, training=False)), expected)
    np.testing.assert_array_equal(functional.predict(x, verbose=0), expected)
    np.testing.assert_array_equal(arr(sequential(x)), x)
    np.testing.assert_array_equal(sequential.predict(x, verbose=0), x)
    assert not np.array_equal(arr(sequential(x, training=True)), x)
    functional.compile(loss="mse")
    bare.compile(loss="mse")
    y = np.zeros((4, 3), "float32")
    assert functional.evaluate(x, y, verbose=0) == bare.evaluate(x, y, verbose=0)
    always = layer_class(6, seed=1, test_time=True)
    assert not np.array_equal(arr(always(x)), x)
    assert not np.array_equal(arr(always(x, training=False)), x)
    with_always = keras.Sequential([keras.Input((16, 16, 3)), always])
    assert not np.array_equal(with_always.predict(x, verbose=0), x)


def test_mask_fills():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, (3, 10, 10, 3)).astype(np.float32)
    reference = arr(FeatureMask(4, seed=2)(np.ones_like(x), training=True)) == 0
    for fill in ("mean", "noise", 0.5):
        out = arr(FeatureMask(4, fill=fill, seed=2)(x, training=True))
        np.testing.assert_array_equal(out[~reference], x[~reference])
        if fill == "mean":
            for i in range(3):
                means = x[i].mean(axis=(0, 1))
                np.testing.assert_allclose(out[i][reference[i][..., 0]], np.broadcast_to(
                    means, (16, 3)), rtol=1e-5)
        elif fill == "noise":
            hidden = out[reference]
            assert hidden.min() >= 0.0 and hidden.max() <= 1.0 and hidden.std() > 0.2
        else:
            assert np.all(out[reference] == 0.5)


def test_fraction_size_is_relative_to_the_shorter_side():
    out = arr(FeatureMask(0.25, seed=0)(ones((2, 16, 24, 1)), training=True))
    assert ((out == 0).sum(axis=(1, 2, 3)) == 16).all()  # 0.25 * 16 = 4 pixels


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8"])
@pytest.mark.parametrize("layer_class", LAYERS)
def test_layouts_shapes_and_the_output_dtype_is_the_compute_dtype(layer_class, dtype):
    rng = np.random.default_rng(0)
    for shape, data_format in (((3, 10, 14, 1), "channels_last"),
                               ((3, 3, 10, 14), "channels_first")):
        x = (rng.random(shape) * (255 if dtype == "uint8" else 1)).astype(dtype)
        layer = layer_class(4, seed=0, data_format=data_format,
                            value_range=(0, 255) if dtype == "uint8" else (0, 1))
        for training in (True, False):
            out = layer(x, training=training)
            assert tuple(out.shape) == x.shape
            # as Keras's preprocessing layers: the compute dtype, and the symbolic one agrees
            assert keras.backend.standardize_dtype(out.dtype) == "float32"
        symbolic = layer(keras.Input(shape[1:], dtype=dtype))
        assert symbolic.dtype == "float32" and tuple(symbolic.shape[1:]) == shape[1:]
    single = layer_class(4, seed=0)(np.ones((10, 12, 3), dtype), training=True)
    assert tuple(single.shape) == (10, 12, 3)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("layer_class", LAYERS)
def test_mixed_precision_policies(layer_class, policy):
    x = np.random.default_rng(0).random((2, 12, 12, 3)).astype("float32")
    layer = layer_class(3, seed=0, dtype=policy)
    compute = policy.split("_")[1]
    for training in (True, False):
        assert keras.backend.standardize_dtype(layer(x, training=training).dtype) == compute
    assert layer(keras.Input((12, 12, 3))).dtype == compute
    masked = arr(layer(x, training=False)).astype("float32")
    np.testing.assert_allclose(masked, x, atol=1e-2)  # rounding to the compute dtype only


def test_channels_first_masks_all_channels_of_the_same_square():
    out = arr(FeatureMask(3, seed=4, data_format="channels_first")(ones((5, 2, 9, 9)),
                                                                   training=True))
    assert ((out == 0).sum(axis=(2, 3)) == 9).all()
    np.testing.assert_array_equal(out[:, 0], out[:, 1])


@pytest.mark.parametrize("layer_class", LAYERS)
def test_dict_inputs_transform_images_and_pass_the_rest(layer_class):
    rng = np.random.default_rng(0)
    images = rng.random((4, 12, 12, 3)).astype("float32")
    labels = np.arange(4)
    data = {"images": images, "labels": labels}
    out = layer_class(3, seed=0)(data, training=True)
    assert sorted(out) == ["images", "labels"] and data["images"] is images
    np.testing.assert_array_equal(arr(out["labels"]), labels)
    assert not np.array_equal(arr(out["images"]), images)
    # the same draws as a plain call with the same seed
    np.testing.assert_array_equal(arr(out["images"]),
                                  arr(layer_class(3, seed=0)(images, training=True)))
    single = layer_class(3, seed=0)({"images": images[0], "labels": labels[0]}, training=True)
    assert tuple(single["images"].shape) == (12, 12, 3)
    with pytest.raises(ValueError, match="'images' entry"):
        layer_class(3)({"pixels": images}, training=True)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_trains_with_fit_and_jit_compile_and_serves_like_the_bare_model(layer_class):
    rng = np.random.default_rng(0)
    x = rng.random((16, 12, 12, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(2)])
    inputs = keras.Input((12, 12, 1))
    model = keras.Model(inputs, base(layer_class(3, seed=0)(inputs)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=BACKEND != "torch")
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 2
    np.testing.assert_allclose(model.predict(x, verbose=0), base.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] == pytest.approx(
        float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            y, base.predict(x, verbose=0))), rel=1e-5)


def test_padding_keeps_the_whole_image_rescaled_and_fills_the_border():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, (40, 16, 16, 3)).astype(np.float32)
    out = arr(FeaturePadding(6, seed=7)(x, training=True))
    sides = set()
    for image, result in zip(x, out):
        inside = np.argwhere(result[..., 0] > 0)
        top, left = inside.min(axis=0)
        bottom, right = inside.max(axis=0) + 1
        height, width = bottom - top, right - left
        assert height == width and 10 <= height <= 16
        sides.add(height)
        np.testing.assert_allclose(result[top:bottom, left:right],
                                   bilinear_reference(image, height, width), atol=1e-5)
        border = np.ones(result.shape[:2], bool)
        border[top:bottom, left:right] = False
        assert (result[border] == 0).all()
    assert len(sides) >= 5  # shrinks drawn across the range


def test_padding_without_shrink_is_the_identity():
    layer = FeaturePadding(2, seed=0)
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    placed = layer.transform_images(x, {"height": [8, 8], "width": [8, 8], "top": [0, 0],
                                        "left": [0, 0], "fill": 0.0})
    np.testing.assert_allclose(arr(placed), x, atol=1e-6)


def test_a_hand_made_mask_transformation_gives_exact_pixels_on_numpy_and_single_images():
    layer = FeatureMask(2, seed=0)
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1) + 1
    transformation = {"top": [0, 2], "left": [1, 0], "size": 2, "fill": -1.0}
    out = arr(layer.transform_images(x, transformation))
    expected = x.copy()
    expected[0, 0:2, 1:3] = -1
    expected[1, 2:4, 0:2] = -1
    np.testing.assert_array_equal(out, expected)
    single = arr(layer.transform_images(x[1], {"top": [2], "left": [0], "size": 2, "fill": -1.0}))
    np.testing.assert_array_equal(single, expected[1])
    np.testing.assert_array_equal(arr(layer.transform_images(x, transformation, training=False)),
                                  x)


def test_a_hand_made_padding_transformation_gives_exact_pixels():
    layer = FeaturePadding(4, seed=0, interpolation="nearest")
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    # halve the image (nearest: every second pixel) and place it at row 1, column 2
    out = arr(layer.transform_images(x, {"height": [2], "width": [2], "top": [1], "left": [2],
                                         "fill": 99.0}))[0, ..., 0]
    expected = np.full((4, 4), 99.0)
    expected[1:3, 2:4] = [[5, 7], [13, 15]]
    np.testing.assert_array_equal(out, expected)


def test_padding_moves_segmentation_masks_with_their_images():
    layer = FeaturePadding(4, seed=3, interpolation="nearest")
    images = np.random.default_rng(0).random((6, 12, 12, 1)).astype("float32") + 1.0
    masks = np.ones((6, 12, 12, 1), "int32") * 2
    out = layer({"images": images, "segmentation_masks": masks}, training=True)
    placed, moved = arr(out["images"]), arr(out["segmentation_masks"])
    assert moved.dtype == np.int32
    np.testing.assert_array_equal(placed > 0, moved == 2)  # the border is class 0 in the mask


@pytest.mark.parametrize("layer_class", LAYERS)
def test_a_drawn_transformation_replays_exactly_and_seeds_are_ints_or_generators(layer_class):
    layer = layer_class(3, seed=5, fill="noise")
    x = np.random.default_rng(1).random((6, 12, 12, 3)).astype(np.float32)
    transformation = layer.get_random_transformation(x, training=True, seed=7)
    once = arr(layer.transform_images(x, transformation))
    np.testing.assert_array_equal(once, arr(layer.transform_images(x, transformation)))
    again = layer.get_random_transformation(x, training=True, seed=7)
    np.testing.assert_array_equal(once, arr(layer.transform_images(x, again)))
    assert not np.array_equal(once, x)
    assert layer.get_random_transformation(x, training=False) is None
    generator = keras.random.SeedGenerator(11)
    first = arr(layer.transform_images(x, layer.get_random_transformation(x, seed=generator)))
    second = arr(layer.transform_images(x, layer.get_random_transformation(x, seed=generator)))
    assert not np.array_equal(first, second)  # a generator advances
    # a generator as the layer's seed: reproducible from its initial seed, and saved as it
    a = arr(layer_class(3, seed=keras.random.SeedGenerator(4))(x, training=True))
    b = arr(layer_class(3, seed=keras.random.SeedGenerator(4))(x, training=True))
    np.testing.assert_array_equal(a, b)
    assert layer_class(3, seed=keras.random.SeedGenerator(4)).get_config()["seed"] == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 0}, "size"),
        ({"size": -1}, "size"),
        ({"size": 1.5}, "size"),
        ({"size": True}, "size"),
        ({"size": 4, "fill": "blue"}, "fill"),
        ({"size": 4, "value_range": (1, 0)}, "value_range"),
        ({"size": 4, "data_format": "nchw"}, "data_format"),
        ({"size": 4, "test_time": "yes"}, "test_time"),
        ({"size": 4, "seed": 1.5}, "seed"),
    ],
)
@pytest.mark.parametrize("layer_class", LAYERS)
def test_invalid_arguments_name_the_argument(layer_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        layer_class(**kwargs)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_invalid_inputs(layer_class):
    with pytest.raises(ValueError, match="smaller than the shorter image side"):
        layer_class(16)(ones((2, 16, 16, 1)), training=True)
    with pytest.raises(ValueError, match="rank"):
        layer_class(2)(np.ones((4, 4), np.float32), training=True)
    bad = ones((2, 8, 8, 1))
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        layer_class(2)(bad, training=True)


def test_get_config_round_trip():
    for layer in (FeatureMask(5, fill=0.3, seed=9, test_time=True),
                  FeaturePadding(0.2, fill="noise", interpolation="nearest", seed=2,
                                 data_format="channels_first")):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def run_python(script, backend=BACKEND, timeout=300):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=timeout)


def backends_installed():
    import importlib.util

    found = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    return [name for name, module in found.items() if importlib.util.find_spec(module)]


@pytest.mark.parametrize("target", ["tensorflow", "jax", "torch"])
def test_a_saved_model_loads_after_import_fmfp_tf_with_identical_outputs(tmp_path, target):
    """Saved on this backend, loaded in a fresh process on `target` after a plain
    `import fmfp_tf`, with the same inference outputs."""
    if target not in backends_installed():
        pytest.skip(f"{target} is not installed")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)), FeatureMask(3, fill="mean", seed=1),
                              FeaturePadding(0.25, seed=2), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    x = np.random.default_rng(0).random((2, 12, 12, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    script = (
        "import numpy as np, sys\n"
        "import fmfp_tf\n"
        "import keras\n"
        "assert not [f for f in sys.meta_path if 'fmfp' in type(f).__module__.replace("
        "'__editable___fmfp', '')], sys.meta_path\n"
        f"m = keras.saving.load_model({path!r})\n"
        "assert [type(l).__name__ for l in m.layers][:2] == ['FeatureMask', 'FeaturePadding']\n"
        "assert m.layers[0].fill == 'mean' and m.layers[1].size == 0.25\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); y = np.load({str(tmp_path / 'y.npy')!r})\n"
        "np.testing.assert_allclose(m.predict(x, verbose=0), y, rtol=1e-6, atol=1e-6)\n"
        "np.testing.assert_allclose(keras.ops.convert_to_numpy(m(x)), y, rtol=1e-6, atol=1e-6)\n"
        "print('ok', keras.backend.backend())\n"
    )
    result = run_python(script, backend=target)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(f"ok {target}")


def test_import_fmfp_tf_changes_nothing_but_its_own_names():
    script = (
        "import os, sys, logging\n"
        "import keras\n"  # Keras and its backend first: what they change is theirs
        "env, hooks, handlers = dict(os.environ), list(sys.meta_path), "
        "list(logging.getLogger().handlers)\n"
        "import fmfp_tf\n"
        "from fmfp_tf import FeatureMask, FeaturePadding, defend\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "assert sys.meta_path == hooks and logging.getLogger().handlers == handlers\n"
        "assert 'fmfp_tf.training' not in sys.modules and 'fmfp_tf.attacks' not in sys.modules\n"
        "assert keras.saving.get_registered_object('fmfp_tf>FeaturePadding') is FeaturePadding\n"
        "print('ok')\n"
    )
    result = run_python(script)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


# -- TensorFlow's data pipeline and graphs (on any Keras backend, when TensorFlow is installed) --

@pytest.mark.parametrize("layer_class", LAYERS)
def test_tf_data_map_transforms_batches_and_dicts_on_any_backend(layer_class):
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).random((7, 16, 16, 3)).astype(np.float32)
    layer = layer_class(5, seed=0)
    batches = list(tf.data.Dataset.from_tensor_slices(x).batch(3).map(layer))
    out = np.concatenate([b.numpy() for b in batches])
    assert out.shape == x.shape and not np.array_equal(out, x)
    labels = np.arange(7)
    dicts = tf.data.Dataset.from_tensor_slices({"images": x, "labels": labels}).batch(4).map(
        layer_class(5, seed=0))
    got = list(dicts)
    np.testing.assert_array_equal(np.concatenate([d["labels"].numpy() for d in got]), labels)
    assert not np.array_equal(np.concatenate([d["images"].numpy() for d in got]), x)
    unbatched = tf.data.Dataset.from_tensor_slices(x).map(layer_class(5, seed=0))
    assert [tuple(i.shape) for i in unbatched][:1] == [(16, 16, 3)]
    inference = tf.data.Dataset.from_tensor_slices(x).batch(7).map(
        lambda images: layer(images, training=False))
    np.testing.assert_array_equal(next(iter(inference)).numpy(), x)


@pytest.mark.parametrize("layer_class", LAYERS)
def test_tf_function_with_an_unknown_batch_and_xla(layer_class):
    tf = pytest.importorskip("tensorflow")
    if BACKEND != "tensorflow":
        pytest.skip("tf.function of a layer needs the TensorFlow backend")
    layer = layer_class(5, seed=0)
    x = np.random.default_rng(0).random((7, 16, 16, 3)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 3), tf.float32)])
    def unknown_batch(images):
        return layer(images, training=True)

    @tf.function(jit_compile=True)
    def compiled(images):
        return layer(images, training=True)

    assert unknown_batch(x).shape == x.shape
    assert compiled(x).shape == x.shape and not np.array_equal(compiled(x).numpy(), x)
