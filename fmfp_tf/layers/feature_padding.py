"""`FeaturePadding`: shrinks every training image by a random amount and pads it back."""
import keras

from fmfp_tf.layers import common
from fmfp_tf.layers.base import RandomImageDefense

INTERPOLATIONS = ("bilinear", "nearest")


def _interpolation_weights(ops, out_size, in_size, offset, new_size, interpolation):
    """For one axis: (weights (batch, out, in), inside (batch, out)).

    Output pixel i lies in the placed image when offset <= i < offset + new_size; its source
    coordinate uses half-pixel centres, as `tf.image.resize` and `keras.ops.image.resize` do. A
    row of weights is one-hot ("nearest") or two-hot ("bilinear"), and zero outside the image, so
    a resize is two batched matrix products: exact, differentiable and the same on every backend.
    """
    i = ops.numpy.arange(out_size, dtype="float32")[None, :]
    offset = ops.numpy.reshape(ops.cast(offset, "float32"), (-1, 1))
    new_size = ops.numpy.reshape(ops.cast(new_size, "float32"), (-1, 1))
    last = ops.cast(in_size - 1, "float32")
    source = (i - offset + 0.5) * (ops.cast(in_size, "float32") / new_size) - 0.5
    inside = ops.numpy.logical_and(i >= offset, i < offset + new_size)
    j = ops.numpy.arange(in_size, dtype="float32")[None, None, :]
    if interpolation == "nearest":
        index = ops.numpy.clip(ops.numpy.floor(source + 0.5), 0.0, last)[..., None]
        weights = ops.cast(ops.numpy.equal(j, index), "float32")
    else:
        source = ops.numpy.clip(source, 0.0, last)
        low = ops.numpy.floor(source)
        high = ops.numpy.minimum(low + 1.0, last)
        frac = (source - low)[..., None]
        weights = (ops.cast(ops.numpy.equal(j, low[..., None]), "float32") * (1.0 - frac)
                   + ops.cast(ops.numpy.equal(j, high[..., None]), "float32") * frac)
    return weights * ops.cast(inside, "float32")[..., None], inside


@keras.saving.register_keras_serializable(package="fmfp_tf")
class FeaturePadding(RandomImageDefense):
    """Feature padding (FP): rescales each image down by a random amount and pads it back.

    For every image independently, an amount `d` is drawn uniformly from {0, ..., size}; the image
    is resized (keeping its aspect ratio) so that its shorter side becomes `S - d`, where S is the
    shorter input side, and placed at a uniformly random offset on a canvas of the input's shape
    whose remaining pixels take the fill. The whole image content stays visible, rescaled.
    Segmentation masks in a dict input follow their images (nearest neighbour, 0 on the border).

    When it acts is `FeatureMask`'s rule: `training=True` (`fit`) transforms, `training=False`
    (`predict`, `evaluate`) does not; inside a model with `training` unset (`model(x)`, an
    exported SavedModel) it is the identity, so a defended model serves unchanged; on its own
    with `training` unset (`layer(x)`, `ds.map(layer)`) it transforms; `test_time=True`
    transforms on every call.

    Args:
        size: the largest shrink. An int >= 1 is pixels; a float in (0, 1) is a fraction of the
            shorter side; `"20%"` and `"6px"` as in the configs and the CLI. Must be smaller
            than the shorter side.
        fill: border value: `"zero"`, `"mean"` (the image's per-channel mean), `"noise"`
            (uniform in `value_range`) or a number.
        value_range: (low, high) of the pixel values, used by `fill="noise"`. Default (0, 1).
        interpolation: `"bilinear"` (default, like `tf.image.resize`) or `"nearest"`.
        seed: an int, a `keras.random.SeedGenerator` or None. The same int reproduces the same
            draws.
        test_time: keep the transformation on at inference too. Default False.
        data_format: `"channels_last"` or `"channels_first"`; default from Keras's config.

    Input: a batch (rank 4) or a single image (rank 3) of any float or integer dtype, or a dict
    whose "images" entry is that. Output: the same shape in the layer's compute dtype. Runs on
    the TensorFlow, JAX and PyTorch backends, and inside `tf.data` on any of them.

    Example:

    >>> import numpy as np, keras
    >>> layer = FeaturePadding(size=4, seed=0)
    >>> images = np.ones((2, 16, 16, 1), "float32")
    >>> tuple(layer(images, training=True).shape)
    (2, 16, 16, 1)
    >>> same = layer(images, training=False)  # identity at inference
    >>> bool((keras.ops.convert_to_numpy(same) == images).all())
    True
    """

    def __init__(self, size, fill="zero", value_range=(0.0, 1.0), interpolation="bilinear",
                 seed=None, test_time=False, data_format=None, **kwargs):
        super().__init__(size, fill=fill, value_range=value_range, seed=seed,
                         test_time=test_time, data_format=data_format, **kwargs)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"{type(self).__name__}: interpolation must be one of "
                f"{', '.join(INTERPOLATIONS)}; got {interpolation!r}"
            )
        self.interpolation = interpolation

    def draw_transformation(self, images, seed):
        """{"height", "width"}: each image's new size, {"top", "left"}: where it is placed (int32,
        (batch,) each); "fill": the border (float32, broadcastable to the images)."""
        ops = self.backend
        batch, height, width, _ = ops.shape(images)
        size = common.size_in_pixels(self.size, height, width, ops)
        u = self._uniform((batch, 3), seed, stream=0)
        shorter = ops.cast(ops.numpy.minimum(height, width), "float32")
        # the shrink d in {0, ..., size}, one per image
        shrink = ops.numpy.minimum(ops.numpy.floor(u[:, 0] * ops.cast(size + 1, "float32")),
                                   ops.cast(size, "float32"))
        scale = (shorter - shrink) / shorter

        def new_side(side):
            side = ops.cast(side, "float32")
            return ops.numpy.maximum(1, ops.cast(ops.numpy.round(side * scale), "int32"))

        def offset(draw, side, new):
            # a uniform draw scaled to the number of free positions of that image
            free = ops.cast(side - new + 1, "float32")
            return ops.numpy.minimum(ops.cast(ops.numpy.floor(draw * free), "int32"), side - new)

        new_h, new_w = new_side(height), new_side(width)
        return {"height": new_h, "width": new_w, "top": offset(u[:, 1], height, new_h),
                "left": offset(u[:, 2], width, new_w), "fill": self._fill(images, seed, 1)}

    def apply_transformation(self, images, transformation, fill=None, interpolation=None):
        """Resizes each image to its (height, width) and places it at (top, left)."""
        ops = self.backend
        _, height, width, _ = ops.shape(images)
        interpolation = interpolation or self.interpolation
        rows, in_rows = _interpolation_weights(ops, height, height, transformation["top"],
                                               transformation["height"], interpolation)
        cols, in_cols = _interpolation_weights(ops, width, width, transformation["left"],
                                               transformation["width"], interpolation)
        # rows first, then columns: (b, out_h, in_h) x (b, in_h, w, c), then over the width
        resized = ops.numpy.einsum("boi,bijc->bojc", rows, images)
        resized = ops.numpy.einsum("bpj,bojc->bopc", cols, resized)
        inside = ops.numpy.logical_and(in_rows[:, :, None, None], in_cols[:, None, :, None])
        fill = transformation["fill"] if fill is None else fill
        return ops.numpy.where(inside, resized, ops.cast(fill, "float32"))

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        """Masks follow their images: nearest neighbour, class 0 on the border."""
        if not training or transformation is None:
            return segmentation_masks
        ops = self.backend
        masks = ops.convert_to_tensor(segmentation_masks)
        nhwc, undo = common.to_batched_nhwc(masks, self.data_format, ops)
        placed = self.apply_transformation(nhwc, transformation, fill=0.0, interpolation="nearest")
        return ops.cast(undo(ops.numpy.round(placed)), masks.dtype)

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        if training and transformation is not None:
            raise ValueError("FeaturePadding: bounding boxes are not transformed yet; pass "
                             "images (and labels) only, or use FeatureMask, which leaves boxes "
                             "where they are")
        return bounding_boxes

    def get_config(self):
        config = super().get_config()
        config["interpolation"] = self.interpolation
        return config
