"""The fit route's training batches: a `keras.utils.PyDataset` that shuffles and augments from
the run's seed alone, so the batches of an epoch depend on (seed, epoch) and a run resumed after
a stop sees the batches an uninterrupted one would (Keras's own `shuffle=True` draws from the
global generator, which a resumed process does not continue).

Epoch e's order is a permutation drawn from NumPy's generator seeded with (seed, e); batch i of
it, when the run augments, is transformed by the registry entry's `batches` function with a
generator seeded with (seed, e, i). The last batch is the remainder, as `fit` on arrays makes it.
"""
import keras
import numpy as np

from fmfp_tf import augmentation_registry, registry
from fmfp_tf.errors import UsageError

# keeps this stream apart from the other draws seeded with the run's seed
_STREAM = 15485863


class SeededBatches(keras.utils.PyDataset):
    """(x, y) batches of `batch_size` for `fit`, epoch by epoch from `initial_epoch`.

    Args:
        x, y: the training images (float32, N x H x W x C) and labels.
        batch_size: images per batch.
        seed: the run's seed.
        initial_epoch: the epoch `fit` starts at (a resumed run's epochs done).
        augment: a function `(images, rng) -> images`, or None.
    """

    def __init__(self, x, y, batch_size, seed, initial_epoch=0, augment=None):
        super().__init__(workers=1, use_multiprocessing=False)
        self.x, self.y, self.batch_size, self.seed = x, y, int(batch_size), int(seed)
        self.augment = augment
        self.next_epoch, self.epoch, self.order = int(initial_epoch), None, None

    def __len__(self):
        return -(-len(self.y) // self.batch_size)

    def on_epoch_begin(self):
        self._begin(self.next_epoch)
        self.next_epoch += 1

    def _begin(self, epoch):
        self.epoch = epoch
        self.order = np.random.default_rng((_STREAM, self.seed, epoch)).permutation(len(self.y))

    def __getitem__(self, index):
        if self.order is None:  # a peek at the shapes before fit's first epoch: its batches
            self._begin(self.next_epoch)
        chosen = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        images = self.x[chosen]
        if self.augment is not None:
            rng = np.random.default_rng((_STREAM, self.seed, self.epoch, index))
            images = self.augment(images, rng).astype(self.x.dtype, copy=False)
        return images, self.y[chosen]


def augmentation(config):
    """The config's `(images, rng) -> images` for `SeededBatches`, or None for augment none;
    an augmentation whose registry entry has no `batches` function is refused in one line."""
    if config.augment == "none":
        return None
    entry = augmentation_registry.AUGMENTATIONS[config.augment]
    if entry.batches is None:
        raise UsageError(f"augment = {config.augment!r} is the TensorFlow loop's only (its "
                         "registry entry gives no batches function); on Keras's "
                         f"{keras.backend.backend()} backend train with augment none or one of "
                         f"{', '.join(fit_choices())}, or KERAS_BACKEND=tensorflow")
    function = registry.resolve(entry.batches)
    return lambda images, rng: function(images, rng, config)


def fit_choices():
    """The augmentations the fit route applies: entries with a `batches` function."""
    return tuple(name for name, entry in augmentation_registry.AUGMENTATIONS.items()
                 if entry.batches is not None)
