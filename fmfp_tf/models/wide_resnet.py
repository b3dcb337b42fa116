"""Wide residual networks (Zagoruyko & Komodakis 2016), the model family of most robust-training
results on 32x32 images: pre-activation basic blocks in three groups of 16k, 32k and 64k filters.

`wrn16_4` (2.8 M parameters, 393 M multiply-adds per 32x32 image) and `wrn28_10` (36.5 M,
5.2 G; the model of the best public GTSRB figure) cost 15 and 205 times dnn1's 25.5 M
(docs/models.md): they are for a GPU, not for CPUs.
"""
import keras
from keras import layers


def _block(x, filters, stride):
    # pre-activation: BN-ReLU before each convolution, the shortcut taken after the first ReLU
    # when the shape changes (the reference's layout)
    y = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(y)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(y)
    y = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    return layers.Add()([y, shortcut])


def wide_resnet(input_shape, num_classes, depth, width, name):
    """WRN-depth-width: depth = 6 n + 4 for n blocks per group."""
    if (depth - 4) % 6:
        raise ValueError(f"depth = {depth}; expected 6 n + 4 (10, 16, 22, 28, ...)")
    blocks = (depth - 4) // 6
    inputs = keras.Input(input_shape, name="images")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    for group, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(blocks):
            x = _block(x, filters, 2 if group and not block else 1)
    x = layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def wrn16_4(input_shape, num_classes, name="wrn16_4"):
    """WRN-16-4: 2 blocks per group, 64-128-256 filters."""
    return wide_resnet(input_shape, num_classes, 16, 4, name)


def wrn28_10(input_shape, num_classes, name="wrn28_10"):
    """WRN-28-10: 4 blocks per group, 160-320-640 filters."""
    return wide_resnet(input_shape, num_classes, 28, 10, name)
