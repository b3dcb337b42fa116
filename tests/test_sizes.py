"""One size syntax for code, configs and the CLI (fmfp_tf.sizes), and the layers reading it."""
import numpy as np
import pytest

from fmfp_tf import sizes


@pytest.mark.parametrize("value, bare, text, pixels_of_32", [
    (20, "percent", "20%", 6),          # the CLI's and the configs' bare number: the paper's z
    ("20", "percent", "20%", 6),
    ("20%", "percent", "20%", 6),
    (0.2, "percent", "20%", 6),
    ("6px", "percent", "6px", 6),
    (40, "percent", "40%", 13),
    (20, "pixels", "20px", 20),         # Python: an int is pixels
    ("20", "pixels", "20px", 20),
    ("20%", "pixels", "20%", 6),
    (0.25, "pixels", "25%", 8),
    ("12.5%", "pixels", "12.5%", 4),
    (1, "percent", "1%", 1),            # at least one pixel
])
def test_parse(value, bare, text, pixels_of_32):
    size = sizes.parse(value, bare=bare)
    assert size.text == text and size.pixels(32) == pixels_of_32
    assert sizes.parse(size.text, bare="pixels") == size   # the canonical text reads back alike
    assert sizes.parse(size.text, bare="percent") == size


@pytest.mark.parametrize("value, bare, message", [
    (20.5, "pixels", "fraction of the image side"),
    ("6.5px", "percent", "whole number"),
    ("100", "percent", r"\(0, 100\)"),
    (0, "percent", "> 0"),
    ("-3", "percent", "not a size"),
    ("big", "pixels", "not a size"),
    (True, "pixels", "got True"),
    (float("nan"), "pixels", "finite"),
])
def test_invalid_sizes_name_the_value(value, bare, message):
    with pytest.raises(ValueError, match=message):
        sizes.parse(value, bare=bare)


def test_layers_accept_the_config_spellings():
    from fmfp_tf import FeatureMask, FeaturePadding, defend

    assert FeatureMask(size="20%").size == 0.2 and FeatureMask(size="6px").size == 6
    assert FeaturePadding(size="6px").size == 6 and FeatureMask(size=6).size == 6
    images = np.ones((5, 32, 32, 3), "float32")
    hidden = (FeatureMask(size="20%", seed=0)(images, training=True).numpy() == 0)
    assert (hidden.sum(axis=(1, 2, 3)) == 6 * 6 * 3).all()   # 20 % of 32 px = 6 px
    import keras

    base = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(3)])
    assert defend(base, "mask", size="20%").layers[1].size == 0.2
