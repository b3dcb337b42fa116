"""TensorFlow: what the layers and attacks need beyond `keras.ops`."""
import tensorflow as tf


def is_concrete(x):
    # an EagerTensor outside any tf.function / tf.data trace
    return tf.executing_eagerly() and hasattr(x, "numpy") and not tf.is_symbolic_tensor(x)


def to_numpy(x):
    return x.numpy()


def gpu_names():
    return [gpu.name for gpu in tf.config.list_physical_devices("GPU")]
