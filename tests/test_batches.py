"""The fit route's training batches (`training/batches.py`) and its augmentation: seeded by
(seed, epoch, batch) alone, so a resumed run sees the batches an uninterrupted one would. No
TensorFlow needed; run on every backend in CI (the shift's equality with the TensorFlow loop's
is checked where TensorFlow is installed)."""

import numpy as np
import pytest

from fmfp_tf.config import TrainConfig
from fmfp_tf.errors import UsageError
from fmfp_tf.training import augmentation, batches


def _data(n=50):
    x = np.arange(n * 6 * 6 * 2, dtype=np.float32).reshape(n, 6, 6, 2)
    return x, np.arange(n, dtype=np.int32)


def _epoch(dataset):
    dataset.on_epoch_begin()
    return [dataset[i] for i in range(len(dataset))]


def test_each_epoch_is_a_seeded_permutation_and_a_resumed_run_sees_the_same_batches():
    x, y = _data()
    first = batches.SeededBatches(x, y, 16, seed=3)
    epochs = [_epoch(first) for _ in range(3)]
    assert len(epochs[0]) == 4 and [len(b[1]) for b in epochs[0]] == [16, 16, 16, 2]
    for epoch in epochs:  # every image once per epoch, images beside their labels
        labels = np.concatenate([b[1] for b in epoch])
        assert sorted(labels) == list(range(50))
        for images, labels in epoch:
            np.testing.assert_array_equal(images, x[labels])
    assert not np.array_equal(epochs[0][0][1], epochs[1][0][1])  # reshuffled every epoch
    resumed = batches.SeededBatches(x, y, 16, seed=3, initial_epoch=2)
    for (a, b), (c, d) in zip(_epoch(resumed), epochs[2]):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    other = _epoch(batches.SeededBatches(x, y, 16, seed=4))
    assert not np.array_equal(other[0][1], epochs[0][0][1])


def test_the_fit_routes_shift_moves_each_image_within_reach_and_repeats_per_seed():
    config = TrainConfig(augment="shift", augment_shift=2)
    shift = batches.augmentation(config)
    x, y = _data(16)
    out = shift(x, np.random.default_rng(0))
    # image i is the 6 x 6 crop of its reflect-padded self at the offset it drew, in [0, 4]
    offsets = np.random.default_rng(0).integers(0, 5, size=(16, 2))
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    expected = np.stack([pad[r:r + 6, c:c + 6] for pad, (r, c) in zip(padded, offsets)])
    np.testing.assert_array_equal(out, expected)
    assert len({tuple(o) for o in offsets}) > 3 and not np.array_equal(out, x)
    np.testing.assert_array_equal(shift(x, np.random.default_rng(0)), out)
    dataset = batches.SeededBatches(x, y, 8, seed=1, augment=shift)
    np.testing.assert_array_equal(_epoch(dataset)[0][0],
                                  _epoch(batches.SeededBatches(x, y, 8, seed=1,
                                                               augment=shift))[0][0])
    assert batches.augmentation(TrainConfig()) is None
    too_far = batches.augmentation(TrainConfig(augment="shift", augment_shift=6))
    with pytest.raises(UsageError, match="augment_shift = 6 is invalid"):
        too_far(x, np.random.default_rng(0))


def test_the_shift_crops_each_image_at_its_drawn_offset():
    """Both routes crop with `augmentation.shifted` (the loop on its generator's offsets): here
    on the backend in use, against a per-image NumPy pad-and-slice."""
    x, _ = _data(16)
    fit = augmentation.shift_batch(x, np.random.default_rng(7),
                                   TrainConfig(augment="shift", augment_shift=2))
    offsets = np.random.default_rng(7).integers(0, 5, size=(16, 2))  # the draws it made
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    expected = np.stack([padded[i, r:r + x.shape[1], c:c + x.shape[2]]
                         for i, (r, c) in enumerate(offsets)])
    assert fit.dtype == x.dtype
    np.testing.assert_array_equal(fit, expected)
    assert (offsets != 2).any(axis=1).sum() > 8  # most images moved


def test_an_augmentation_without_a_fit_function_is_refused_in_one_line(monkeypatch):
    from fmfp_tf import augmentation_registry

    entry = augmentation_registry.AugmentationEntry("blur", "toy:blur")
    monkeypatch.setitem(augmentation_registry.AUGMENTATIONS._entries, "blur", entry)
    monkeypatch.setitem(augmentation_registry.AUGMENTATIONS._origins, "blur", "test")
    with pytest.raises(UsageError, match="augment = 'blur' is the TensorFlow loop's only"):
        batches.augmentation(TrainConfig(augment="blur"))
    assert batches.fit_choices() == ("shift",)
