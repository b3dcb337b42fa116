"""DNN1..DNN4: four CNNs of distinct design and capacity for traffic-sign images.

The paper's table of architectures was lost in OCR, so these are the project's reading: four
classic designs spanning capacity, documented with parameter counts in docs/models.md. All output
logits (no softmax), so attacks and losses work from logits.
"""
import keras
from keras import layers


def dnn1(input_shape, num_classes, name="dnn1"):
    """Plain CNN: two blocks of two 3x3 convolutions, max-pooling, dropout, a dense layer.

    No batch normalisation: its statistics, gathered on masked training images, would not match
    the unmasked images seen at inference.
    """
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def dnn2(input_shape, num_classes, name="dnn2"):
    """VGG-style with batch normalisation: three blocks (32, 64, 128 filters), global pooling."""
    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for filters in (32, 64, 128):
        for _ in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _residual_block(x, filters, stride):
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization(momentum=0.9)(y)
    y = layers.ReLU()(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization(momentum=0.9)(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
        shortcut = layers.BatchNormalization(momentum=0.9)(shortcut)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def dnn3(input_shape, num_classes, name="dnn3"):
    """Small ResNet (He et al. 2016): three stages of two basic blocks (32, 64, 128 filters)."""
    inputs = keras.Input(input_shape, name="images")
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    for stage, filters in enumerate((32, 64, 128)):
        x = _residual_block(x, filters, 1 if stage == 0 else 2)
        x = _residual_block(x, filters, 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def dnn4(input_shape, num_classes, name="dnn4"):
    """LeNet-5 style (LeCun et al. 1998): two 5x5 tanh convolutions, average pooling, 120-84."""
    inputs = keras.Input(input_shape, name="images")
    x = layers.Conv2D(6, 5, padding="same", activation="tanh")(inputs)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv2D(16, 5, activation="tanh")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation="tanh")(x)
    x = layers.Dense(84, activation="tanh")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
