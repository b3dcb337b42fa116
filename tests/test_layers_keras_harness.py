"""Keras's own layer test harness (`run_layer_test`, every check on: serialization, training,
symbolic and eager calls, mixed precision, the seed generator), called the way Keras calls it
for `RandomErasing`, on the current backend. No TensorFlow import: it runs in every backend
environment of `.ci/run`."""
import pytest
from keras.src import testing

from fmfp_tf import FeatureMask, FeaturePadding

SHAPES = {"channels_last": (8, 12, 10, 3), "channels_first": (8, 3, 12, 10)}


class KerasHarnessTest(testing.TestCase):
    def check(self, layer_class, data_format, **kwargs):
        shape = SHAPES[data_format]
        self.run_layer_test(
            layer_class,
            init_kwargs={"size": 3, "seed": 1, "data_format": data_format, **kwargs},
            input_shape=shape,
            supports_masking=False,
            expected_output_shape=shape,
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
        )

    def test_feature_mask(self):
        for data_format in SHAPES:
            self.check(FeatureMask, data_format)
            self.check(FeatureMask, data_format, fill="noise", test_time=True)

    def test_feature_padding(self):
        for data_format in SHAPES:
            self.check(FeaturePadding, data_format)
            self.check(FeaturePadding, data_format, fill="mean", interpolation="nearest",
                       test_time=True)

    def test_uint8_inputs_give_the_compute_dtype_eagerly_and_symbolically(self):
        for layer_class in (FeatureMask, FeaturePadding):
            self.run_layer_test(
                layer_class,
                init_kwargs={"size": 3, "seed": 1, "value_range": (0, 255), "fill": "noise"},
                input_shape=(4, 12, 12, 3),
                input_dtype="uint8",
                supports_masking=False,
                expected_output_shape=(4, 12, 12, 3),
                expected_output_dtype="float32",
            )


if __name__ == "__main__":
    pytest.main([__file__])
