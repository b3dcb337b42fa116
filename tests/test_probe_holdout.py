"""The robust probe's hold-out: by seeded image (as before) or by whole groups of near-copies
(GTSRB's sign tracks), so a probe image never has a frame of its track in training."""
import numpy as np
import pytest

from fmfp_tf import data
from fmfp_tf.config import TrainConfig
from fmfp_tf.data.images import Arrays
from fmfp_tf.errors import UsageError
from fmfp_tf.training.run_directory import PROBED_PER_GROUP, hold_out
from tests.test_data import gtsrb_fixture


def _tracks(groups=40, frames=10):
    """`groups` tracks of `frames` images; each image's label is its index, to follow it."""
    n = groups * frames
    return Arrays(np.zeros((n, 2, 2, 1), np.uint8), np.arange(n), [str(i) for i in range(n)],
                  groups=np.repeat([f"c/{g:05d}" for g in range(groups)], frames))


def test_group_holdout_keeps_whole_tracks_out_of_training():
    arrays = _tracks()
    train, probe = hold_out(arrays, 20, seed=3, by="group")
    assert len(probe.labels) == 20
    probed_groups = set(arrays.groups[probe.labels])
    assert len(probed_groups) == 20 // PROBED_PER_GROUP
    assert not probed_groups & set(train.groups)  # no frame of a probed track is trained on
    assert len(train.labels) == 400 - 10 * len(probed_groups)  # the whole track leaves
    again_train, again = hold_out(arrays, 20, seed=3, by="group")
    np.testing.assert_array_equal(again.labels, probe.labels)
    _, other = hold_out(arrays, 20, seed=4, by="group")
    assert not np.array_equal(other.labels, probe.labels)


def test_image_holdout_draws_what_it_drew_before():
    """by="image" (the default) keeps its draw, so earlier runs train on the same images."""
    arrays = _tracks()
    train, probe = hold_out(arrays, 20, seed=3)
    chosen = np.zeros(400, bool)
    chosen[np.random.default_rng([3, 104729]).choice(400, 20, replace=False)] = True
    np.testing.assert_array_equal(probe.labels, arrays.labels[chosen])
    np.testing.assert_array_equal(train.groups, arrays.groups[~chosen])


def test_group_holdout_refusals():
    plain = Arrays(np.zeros((100, 2, 2, 1), np.uint8), np.zeros(100, int), ["a"])
    with pytest.raises(UsageError, match="no groups"):
        hold_out(plain, 10, 0, by="group")
    with pytest.raises(UsageError, match="more than half"):  # 60 of 100 tracks for 240 images
        hold_out(_tracks(100, 10), 240, 0, by="group")
    with pytest.raises(UsageError, match="expected image or group"):
        hold_out(_tracks(), 10, 0, by="track")


def test_gtsrb_images_carry_their_track(tmp_path):
    base = gtsrb_fixture(str(tmp_path), per_class=3)
    arrays = data.load_arrays("gtsrb", str(tmp_path), "train", (8, 8), use_cache=False)
    assert sorted(arrays.groups.tolist()) == sorted(
        [f"{c:05d}/00000" for c in (0, 5, 42) for _ in range(3)])
    # a skipped file's group leaves with it, and the groups stay beside their images
    open(f"{base}/Final_Training/Images/00005/00000_00001.ppm", "wb").close()
    skipped = data.load_arrays("gtsrb", str(tmp_path), "train", (8, 8), on_bad_image="skip")
    assert len(skipped.groups) == 8 and list(skipped.groups).count("00005/00000") == 2
    limited = data.load_arrays("gtsrb", str(tmp_path), "train", (8, 8), on_bad_image="skip",
                               limit=4)
    for label, group in zip(limited.labels, limited.groups):
        assert group.startswith(f"{label:05d}/")


def test_probe_holdout_is_out_of_the_fingerprint_at_its_default(tmp_path):
    config = TrainConfig(dataset="gtsrb", defense="nfgsm-at", data_dir=str(tmp_path))
    assert "probe_holdout" not in config.weight_settings()
    grouped = config.replace(probe_holdout="group")
    assert grouped.fingerprint() != config.fingerprint()
    off = TrainConfig(dataset="gtsrb", defense="none", data_dir=str(tmp_path))
    assert "probe_holdout" in off.unread_settings()
