"""`FeatureMask`: hides one random square of every training image."""
import keras

from fmfp_tf.layers import common
from fmfp_tf.layers.base import RandomImageDefense


@keras.saving.register_keras_serializable(package="fmfp_tf")
class FeatureMask(RandomImageDefense):
    """Feature mask (FM): replaces a random `size` x `size` square of each image by a fill.

    For every image of the batch independently, the square's top-left corner is drawn uniformly
    among the positions that keep the whole square inside the image (row and column 0 and the
    last ones included), and the square is filled in all channels. Unlike
    `keras.layers.RandomErasing`, every image is masked, the square has a fixed side, and its
    corner is an integer pixel.

    When it acts: `training=True` (as `fit` passes) masks; `training=False` (`predict`,
    `evaluate`) does not; inside a model with `training` unset (`model(x)`, an exported
    SavedModel) it is the identity, so a defended model serves exactly like an undefended one;
    called on its own with `training` unset (`layer(x)`, `ds.map(layer)`) it masks, as Keras's
    preprocessing layers do in a data pipeline. `test_time=True` masks on every call, inference
    included: a randomized defense that must be evaluated with EOT.

    Args:
        size: side of the square. An int >= 1 is pixels; a float in (0, 1) is a fraction of the
            shorter image side; the strings `"20%"` (the paper's z, a percent of the side) and
            `"6px"` say the same as the configs and the CLI. Must be smaller than the shorter
            side. A fraction resolves to `round(fraction * side)` pixels, at least 1.
        fill: what hidden pixels become: `"zero"`, `"mean"` (the image's own per-channel mean),
            `"noise"` (uniform in `value_range`) or a number.
        value_range: (low, high) of the pixel values, used by `fill="noise"`. Default (0, 1).
        seed: an int, a `keras.random.SeedGenerator` or None. The same int reproduces the same
            squares.
        test_time: keep the mask on at inference too. Default False.
        data_format: `"channels_last"` (default from `keras.config.image_data_format()`) or
            `"channels_first"`.

    Input: a batch (rank 4) or a single image (rank 3) of any float or integer dtype, or a dict
    whose "images" entry is that (other entries pass through). Output: the same shape, in the
    layer's compute dtype (float32, or float16 under `mixed_float16`), as Keras's layers give it.
    Runs on the TensorFlow, JAX and PyTorch backends, and inside `tf.data` on any of them.

    Example:

    >>> import numpy as np, keras
    >>> layer = FeatureMask(size=2, seed=0)
    >>> images = np.ones((4, 8, 8, 3), "float32")
    >>> out = keras.ops.convert_to_numpy(layer(images, training=True))
    >>> int((out == 0).sum(axis=(1, 2, 3))[0])  # 2 * 2 pixels x 3 channels
    12
    >>> same = layer(images, training=False)  # identity at inference
    >>> bool((keras.ops.convert_to_numpy(same) == images).all())
    True
    """

    def draw_transformation(self, images, seed):
        """{"top", "left"}: each image's square corner (int32, (batch,)); "size": its side in
        pixels; "fill": what hidden pixels become (float32, broadcastable to the images)."""
        ops = self.backend
        batch, height, width, _ = ops.shape(images)
        size = common.size_in_pixels(self.size, height, width, ops)
        u = self._uniform((batch, 2), seed, stream=0)
        # corners 0..H-size keep the square inside the image, row 0 and the last row included
        top = ops.numpy.minimum(
            ops.cast(ops.numpy.floor(u[:, 0] * ops.cast(height - size + 1, "float32")), "int32"),
            height - size)
        left = ops.numpy.minimum(
            ops.cast(ops.numpy.floor(u[:, 1] * ops.cast(width - size + 1, "float32")), "int32"),
            width - size)
        return {"top": top, "left": left, "size": size, "fill": self._fill(images, seed, 1)}

    def apply_transformation(self, images, transformation):
        ops = self.backend
        _, height, width, _ = ops.shape(images)
        top = ops.numpy.reshape(ops.cast(transformation["top"], "int32"), (-1, 1))
        left = ops.numpy.reshape(ops.cast(transformation["left"], "int32"), (-1, 1))
        size = transformation["size"]
        rows = ops.numpy.arange(height, dtype="int32")[None, :]
        cols = ops.numpy.arange(width, dtype="int32")[None, :]
        in_rows = ops.numpy.logical_and(rows >= top, rows < top + size)
        in_cols = ops.numpy.logical_and(cols >= left, cols < left + size)
        hidden = ops.numpy.logical_and(in_rows[:, :, None, None], in_cols[:, None, :, None])
        fill = ops.cast(transformation["fill"], "float32")
        return ops.numpy.where(hidden, fill, images)
