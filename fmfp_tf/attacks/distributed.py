"""Attacks split over the replicas of a `tf.distribute` strategy.

Data parallel, like training: every global batch is split across replicas, each replica crafts
adversarial examples for its share against its copy of the model, and the shares are gathered back
in order. Any graph-mode attack core fits (`fgsm_graph`, `pgd_graph`, or a lambda around them).

Example (2 GPUs, PGD-20 on 10,000 images):

    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = keras.models.load_model("run/model.keras")
    x_adv = craft_distributed(
        strategy, lambda x, y: pgd_graph(model, x, y, 8 / 255, 1 / 255, 20), x, y)
"""
import numpy as np
import tensorflow as tf

from fmfp_tf.attacks import common


def craft_distributed(strategy, attack_graph, x, y, batch_size=256):
    """x_adv for all of x, crafted by `attack_graph(x, y)` on every replica of `strategy`.

    `batch_size` is global (divided among the replicas), as in training.
    """
    x = common.check_images(x)
    y = common.check_labels(y, len(x))
    batch_size = common.check_positive_int("batch_size", batch_size)
    options = tf.data.Options()
    # in-memory arrays: every worker keeps its share of each global batch (as in training)
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).with_options(options)

    @tf.function
    def step(xb, yb):
        per_replica = strategy.run(attack_graph, args=(xb, yb))
        return strategy.gather(per_replica, axis=0)

    parts = [step(xb, yb).numpy()
             for xb, yb in strategy.experimental_distribute_dataset(dataset)]
    return np.concatenate(parts) if parts else np.zeros_like(x)
