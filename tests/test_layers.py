"""Behaviour of FeatureMask and FeaturePadding."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from fmfp_tf import FeatureMask, FeaturePadding

# chi-square critical value, 35 degrees of freedom, alpha = 0.001
CHI2_35_0_999 = 66.62


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


def test_mask_zeroes_exactly_one_square_per_image_and_channel():
    out = FeatureMask(4, seed=3)(ones(), training=True).numpy()
    assert ((out == 0).sum(axis=(1, 2)) == 16).all()  # per image, per channel
    assert set(np.unique(out)) == {0.0, 1.0}
    for top, left, height, width in square_positions(out):
        assert (height, width) == (4, 4)
    # the same square in every channel
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_mask_positions_cover_the_image_uniformly():
    size, side, n = 3, 8, 3600
    out = FeatureMask(size, seed=11)(ones((n, side, side, 1)), training=True).numpy()
    counts = np.zeros((side - size + 1, side - size + 1))
    for top, left, _, _ in square_positions(out):
        counts[top, left] += 1
    expected = n / counts.size
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.min() > 0  # every admissible corner, including the last row and column
    assert chi2 < CHI2_35_0_999, chi2


def test_positions_differ_across_the_batch_and_follow_the_seed():
    a = FeatureMask(4, seed=5)(ones((16, 20, 20, 1)), training=True).numpy()
    b = FeatureMask(4, seed=5)(ones((16, 20, 20, 1)), training=True).numpy()
    c = FeatureMask(4, seed=6)(ones((16, 20, 20, 1)), training=True).numpy()
    assert len(set(square_positions(a))) > 8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_consecutive_calls_draw_new_positions():
    layer = FeatureMask(4, seed=5)
    first = layer(ones(), training=True).numpy()
    second = layer(ones(), training=True).numpy()
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("layer_class", [FeatureMask, FeaturePadding])
def test_identity_at_inference_and_active_with_test_time(layer_class):
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    layer = layer_class(6, seed=1)
    np.testing.assert_array_equal(layer(x).numpy(), x)
    np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
    model = keras.Sequential([keras.Input((16, 16, 3)), layer])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    assert not np.array_equal(layer(x, training=True).numpy(), x)
    always = layer_class(6, seed=1, test_time=True)
    assert not np.array_equal(always(x).numpy(), x)


def test_mask_fills():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, (3, 10, 10, 3)).astype(np.float32)
    reference = FeatureMask(4, seed=2)(np.ones_like(x), training=True).numpy() == 0
    for fill in ("mean", "noise", 0.5):
        out = FeatureMask(4, fill=fill, seed=2)(x, training=True).numpy()
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
    out = FeatureMask(0.25, seed=0)(ones((2, 16, 24, 1)), training=True).numpy()
    assert ((out == 0).sum(axis=(1, 2, 3)) == 16).all()  # 0.25 * 16 = 4 pixels


@pytest.mark.parametrize("dtype", ["float16", "float32", "uint8"])
@pytest.mark.parametrize("layer_class", [FeatureMask, FeaturePadding])
def test_dtypes_layouts_and_shapes(layer_class, dtype):
    rng = np.random.default_rng(0)
    for shape, data_format in (((3, 10, 14, 1), "channels_last"), ((3, 3, 10, 14),
                                                                    "channels_first")):
        x = (rng.random(shape) * (255 if dtype == "uint8" else 1)).astype(dtype)
        out = layer_class(4, seed=0, data_format=data_format, value_range=(0, 255) if
                          dtype == "uint8" else (0, 1))(x, training=True)
        assert out.shape == x.shape and out.dtype == tf.as_dtype(dtype)
    single = layer_class(4, seed=0)(np.ones((10, 12, 3), dtype), training=True)
    assert single.shape == (10, 12, 3)


def test_channels_first_masks_all_channels_of_the_same_square():
    out = FeatureMask(3, seed=4, data_format="channels_first")(
        ones((5, 2, 9, 9)), training=True).numpy()
    assert ((out == 0).sum(axis=(2, 3)) == 9).all()
    np.testing.assert_array_equal(out[:, 0], out[:, 1])


@pytest.mark.parametrize("layer_class", [FeatureMask, FeaturePadding])
def test_graph_xla_and_tf_data(layer_class):
    layer = layer_class(5, seed=0)
    x = np.random.default_rng(0).random((7, 16, 16, 3)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 3), tf.float32)])
    def unknown_batch(images):
        return layer(images, training=True)

    @tf.function(jit_compile=True)
    def compiled(images):
        return layer(images, training=True)

    assert unknown_batch(x).shape == x.shape
    assert compiled(x).shape == x.shape
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(3).map(
        lambda images: layer(images, training=True))
    assert sum(int(b.shape[0]) for b in dataset) == 7


@pytest.mark.parametrize("layer_class", [FeatureMask, FeaturePadding])
def test_trains_inside_model_fit(layer_class):
    model = keras.Sequential([keras.Input((12, 12, 1)), layer_class(3, seed=0),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(np.ones((8, 12, 12, 1), "float32"), np.zeros(8, "int32"), epochs=2,
                        verbose=0)
    assert len(history.history["loss"]) == 2


def test_padding_keeps_the_whole_image_rescaled_and_fills_the_border():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, (40, 16, 16, 3)).astype(np.float32)
    out = FeaturePadding(6, seed=7)(x, training=True).numpy()
    sides = set()
    for image, result in zip(x, out):
        inside = np.argwhere(result[..., 0] > 0)
        top, left = inside.min(axis=0)
        bottom, right = inside.max(axis=0) + 1
        height, width = bottom - top, right - left
        assert height == width and 10 <= height <= 16
        sides.add(height)
        assert (result[inside[:, 0], inside[:, 1]] > 0).all()
        expected = tf.image.resize(image, (height, width), method="bilinear").numpy()
        np.testing.assert_allclose(result[top:bottom, left:right], expected, atol=1e-5)
        border = np.ones(result.shape[:2], bool)
        border[top:bottom, left:right] = False
        assert (result[border] == 0).all()
    assert len(sides) >= 5  # shrinks drawn across the range


def test_padding_without_shrink_is_the_identity():
    layer = FeaturePadding(2, seed=0)
    x = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    new = [8, 8]
    placed = layer.transform_images(tf.constant(x), {"height": new, "width": new, "top": [0, 0],
                                                     "left": [0, 0], "fill": 0.0})
    np.testing.assert_allclose(placed.numpy(), x, atol=1e-6)


def test_a_hand_made_mask_transformation_gives_exact_pixels():
    layer = FeatureMask(2, seed=0)
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1) + 1
    out = layer.transform_images(tf.constant(x), {"top": [0, 2], "left": [1, 0], "size": 2,
                                                  "fill": -1.0}).numpy()
    expected = x.copy()
    expected[0, 0:2, 1:3] = -1
    expected[1, 2:4, 0:2] = -1
    np.testing.assert_array_equal(out, expected)


def test_a_hand_made_padding_transformation_gives_exact_pixels():
    layer = FeaturePadding(4, seed=0, interpolation="nearest")
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    # halve the image (nearest: every second pixel) and place it at row 1, column 2
    out = layer.transform_images(tf.constant(x), {"height": [2], "width": [2], "top": [1],
                                                  "left": [2], "fill": 99.0}).numpy()[0, ..., 0]
    expected = np.full((4, 4), 99.0)
    expected[1:3, 2:4] = [[5, 7], [13, 15]]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("layer_class", [FeatureMask, FeaturePadding])
def test_a_drawn_transformation_replays_exactly_and_the_call_uses_the_same_two_steps(layer_class):
    layer = layer_class(3, seed=5, fill="noise")
    x = tf.constant(np.random.default_rng(1).random((6, 12, 12, 3)).astype(np.float32))
    seed = tf.constant([3, 4], tf.int64)
    transformation = layer.get_random_transformation(x, seed=seed)
    once = layer.transform_images(x, transformation).numpy()
    np.testing.assert_array_equal(once, layer.transform_images(x, transformation).numpy())
    again = layer.transform_images(x, layer.get_random_transformation(x, seed=seed)).numpy()
    np.testing.assert_array_equal(once, again)
    assert not np.array_equal(once, x.numpy())


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
@pytest.mark.parametrize("layer_class", [FeatureMask, FeaturePadding])
def test_invalid_arguments_name_the_argument(layer_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        layer_class(**kwargs)


@pytest.mark.parametrize("layer_class", [FeatureMask, FeaturePadding])
def test_invalid_inputs(layer_class):
    with pytest.raises(ValueError, match="smaller than the shorter image side"):
        layer_class(16)(ones((2, 16, 16, 1)), training=True)
    with pytest.raises(ValueError, match="rank"):
        layer_class(2)(np.ones((4, 4), np.float32), training=True)
    bad = ones((2, 8, 8, 1))
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        layer_class(2)(bad, training=True)


def test_saved_model_file_loads_in_a_fresh_process(tmp_path):
    model = keras.Sequential([keras.Input((12, 12, 3)), FeatureMask(3, fill="mean", seed=1),
                              FeaturePadding(0.25, seed=2), keras.layers.Flatten(),
                              keras.layers.Dense(4)])
    path = str(tmp_path / "m.keras")
    model.save(path)
    x = np.random.default_rng(0).random((2, 12, 12, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    script = (
        "import numpy as np, keras, sys\n"
        "import fmfp_tf.layers\n"
        f"m = keras.saving.load_model({path!r})\n"
        "assert [type(l).__name__ for l in m.layers][:2] == ['FeatureMask', 'FeaturePadding']\n"
        "assert m.layers[0].fill == 'mean' and m.layers[1].size == 0.25\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); y = np.load({str(tmp_path / 'y.npy')!r})\n"
        "np.testing.assert_allclose(m.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_get_config_round_trip():
    for layer in (FeatureMask(5, fill=0.3, seed=9, test_time=True),
                  FeaturePadding(0.2, fill="noise", interpolation="nearest", seed=2)):
        clone = type(layer).from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
