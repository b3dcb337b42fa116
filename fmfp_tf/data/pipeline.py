"""The one tf.data pipeline every dataset goes through: uint8 arrays in, float32 [0, 1] batches out."""
import tensorflow as tf


def make_dataset(images, labels, batch_size, shuffle=False, seed=0, epoch=0, drop_remainder=False,
                 repeat=False):
    """Batched, prefetched (float32 image in [0, 1], int32 label) pairs.

    Images stay uint8 until the batch is formed (4x less memory and copying than float32). With
    `shuffle`, the order depends on (seed, epoch) only, so a resumed run sees the same order as an
    uninterrupted one.
    """
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(
            len(images), seed=seed * 100003 + epoch, reshuffle_each_iteration=False
        )
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(
        lambda x, y: (tf.cast(x, tf.float32) / 255.0, tf.cast(y, tf.int32)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
