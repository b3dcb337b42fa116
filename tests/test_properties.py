"""Property-based tests (hypothesis): the layers over shapes, dtypes, sizes and fills; the attacks'
budgets and ranges."""
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmfp_tf import FeatureMask, FeaturePadding, attacks
from fmfp_tf.errors import ModelError
from fmfp_tf.models_io import check_compatible

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(st.integers(1, 4), st.integers(5, 20), st.integers(5, 20),
                   st.sampled_from([1, 3]))
fills = st.one_of(st.sampled_from(["zero", "mean", "noise"]),
                  st.floats(0.0, 1.0, allow_nan=False))


@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(["float32", "float16", "uint8"]),
       fraction=st.floats(0.05, 0.95), fill=fills, seed=st.integers(0, 2**20))
def test_mask_properties(shape, dtype, fraction, fill, seed):
    batch, height, width, channels = shape
    size = max(1, min(int(fraction * min(height, width)), min(height, width) - 1))
    scale = 255 if dtype == "uint8" else 1
    x = (np.random.default_rng(seed).random(shape) * 0.8 * scale + 0.1 * scale).astype(dtype)
    value_range = (0, scale)
    out = FeatureMask(size, fill=fill, seed=seed, value_range=value_range)(x, training=True)
    out = keras.ops.convert_to_numpy(out)
    # Keras's convention: the layer's compute dtype, whatever the input's
    assert out.shape == x.shape and out.dtype == np.float32
    changed = np.any(out != x.astype(np.float32), axis=-1)
    # at most size*size pixels change per image, all inside one size x size square
    for image in changed:
        rows, cols = np.nonzero(image)
        assert len(rows) <= size * size
        if len(rows):
            assert rows.max() - rows.min() < size and cols.max() - cols.min() < size
    assert float(out.min()) >= 0 and float(out.max()) <= scale
    same = FeatureMask(size, seed=seed)(x, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(same), x.astype(np.float32))


@SETTINGS
@given(shape=shapes, dtype=st.sampled_from(["float32", "uint8"]), fraction=st.floats(0.05, 0.95),
       fill=fills, seed=st.integers(0, 2**20))
def test_padding_properties(shape, dtype, fraction, fill, seed):
    batch, height, width, channels = shape
    size = max(1, min(int(fraction * min(height, width)), min(height, width) - 1))
    scale = 255 if dtype == "uint8" else 1
    x = (np.random.default_rng(seed).random(shape) * scale).astype(dtype)
    layer = FeaturePadding(size, fill=fill, seed=seed, value_range=(0, scale))
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    # bilinear resampling and the fills never leave the value range
    assert float(out.min()) >= 0 and float(out.max()) <= scale + 1e-3
    # a drawn transformation: every image shrunk by 0..size pixels (aspect kept), placed inside
    # the canvas, its pixels the bilinear resize of the input, the rest the fill
    drawn = layer.get_random_transformation(x, training=True, seed=seed)
    placed = keras.ops.convert_to_numpy(layer.transform_images(x, drawn))
    t = {k: keras.ops.convert_to_numpy(v) for k, v in drawn.items()}
    fill_values = np.broadcast_to(t["fill"], x.shape)
    shorter = min(height, width)
    for i in range(batch):
        h, w, top, left = (int(t[k][i]) for k in ("height", "width", "top", "left"))
        assert shorter - size - 1 <= min(h, w) <= shorter
        assert 0 <= top <= height - h and 0 <= left <= width - w
        resized = keras.ops.convert_to_numpy(keras.ops.image.resize(
            x[i:i + 1].astype(np.float32), (h, w), interpolation="bilinear", antialias=False))[0]
        np.testing.assert_allclose(placed[i, top:top + h, left:left + w], resized,
                                   atol=1e-4 * scale)
        border = np.ones((height, width), bool)
        border[top:top + h, left:left + w] = False
        np.testing.assert_allclose(placed[i][border], fill_values[i][border], atol=1e-6 * scale)


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(5)])


@settings(max_examples=15, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["fgsm", "ifgsm", "rfgsm", "pgd"]),
       eps=st.floats(0.001, 0.5), seed=st.integers(0, 1000), n=st.integers(1, 9))
def test_attack_budgets_and_ranges(small_model, name, eps, seed, n):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 5, n)
    x_adv = getattr(attacks, name)(small_model, x, y, eps=eps)
    assert x_adv.shape == x.shape
    assert np.abs(x_adv - x).max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_model_data_mismatch_is_a_clear_error(small_model):
    with pytest.raises(ModelError, match=r"expects images of shape \(8, 8, 3\)"):
        check_compatible(small_model, (32, 32, 3), 5, "m", "gtsrb")
    with pytest.raises(ModelError, match="5 output classes but gtsrb has 43"):
        check_compatible(small_model, (8, 8, 3), 43, "m", "gtsrb")
