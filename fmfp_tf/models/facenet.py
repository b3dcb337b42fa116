"""A FaceNet-style classifier: Inception-ResNet blocks, an embedding, and a softmax head.

FaceNet (Schroff et al. 2015) learns an embedding with an Inception-ResNet trunk (Szegedy et al.
2017). Pretrained FaceNet weights are downloaded at run time by the packages that ship them, which
fails offline, so this network is trained from scratch with a classification head on the embedding
(the "softmax" variant of face recognition). It is scaled down for 32x32 to 64x64 inputs.
"""
import keras
from keras import layers


def _conv(x, filters, kernel, strides=1, activation="relu"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.Activation(activation)(x) if activation else x


def _block_a(x, scale=0.2):
    """Inception-ResNet-A: 1x1 | 1x1-3x3 | 1x1-3x3-3x3, joined by a linear 1x1, scaled residual."""
    b0 = _conv(x, 32, 1)
    b1 = _conv(_conv(x, 32, 1), 32, 3)
    b2 = _conv(_conv(_conv(x, 32, 1), 48, 3), 64, 3)
    mixed = layers.Concatenate()([b0, b1, b2])
    up = layers.Conv2D(x.shape[-1], 1)(mixed)
    x = layers.Add()([x, layers.Rescaling(scale)(up)])
    return layers.ReLU()(x)


def _block_b(x, scale=0.1):
    """Inception-ResNet-B: 1x1 | 1x1-1x7-7x1, a linear 1x1, scaled residual."""
    b0 = _conv(x, 96, 1)
    b1 = _conv(_conv(_conv(x, 64, 1), 80, (1, 7)), 96, (7, 1))
    mixed = layers.Concatenate()([b0, b1])
    up = layers.Conv2D(x.shape[-1], 1)(mixed)
    x = layers.Add()([x, layers.Rescaling(scale)(up)])
    return layers.ReLU()(x)


def _reduction(x):
    b0 = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    b1 = _conv(x, 96, 3, strides=2)
    b2 = _conv(_conv(x, 64, 1), 96, 3, strides=2)
    return layers.Concatenate()([b0, b1, b2])


def facenet(input_shape, num_classes, name="facenet", embedding_size=128):
    """Inception-ResNet trunk -> `embedding` (a named layer) -> logits."""
    inputs = keras.Input(input_shape, name="images")
    x = _conv(inputs, 32, 3)
    x = _conv(x, 64, 3)
    x = layers.MaxPooling2D(padding="same")(x)
    x = _conv(x, 128, 1)
    for _ in range(2):
        x = _block_a(x)
    x = _reduction(x)
    for _ in range(2):
        x = _block_b(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(embedding_size, use_bias=False)(x)
    embedding = layers.BatchNormalization(momentum=0.9, name="embedding")(x)
    outputs = layers.Dense(num_classes, name="logits")(embedding)
    return keras.Model(inputs, outputs, name=name)
