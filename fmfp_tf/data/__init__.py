"""Datasets: `load(name, ...)` gives a batched tf.data pipeline, `load_arrays` the arrays behind it.

| name | source | classes | channels |
| --- | --- | --- | --- |
| synthetic | drawn from a seed, no files (the default) | 43 | 3 |
| gtsrb | official GTSRB layout under data_dir | 43 | 3 |
| belgium | official BelgiumTSC layout under data_dir | 62 | 3 |
| orl | ORL / AT&T faces `s1..s40/*.pgm` | 40 | 1 |
| yale | Yale faces `subjectNN.<condition>` | 15 | 1 |
| folder | one sub-folder of images per class | any | 3 |

Images are float32 in [0, 1], resized to `image_size`; labels are int32.
"""
import dataclasses

import numpy as np

from fmfp_tf.data import cache, face_alignment, faces, folder, gtsrb, images, synthetic
from fmfp_tf.data.images import Arrays
from fmfp_tf.data.pipeline import make_dataset
from fmfp_tf.errors import DataError, UsageError

DATASETS = ("synthetic", "gtsrb", "belgium", "orl", "yale", "folder")
SPLITS = ("train", "test")
COLOR_MODES = {"synthetic": "rgb", "gtsrb": "rgb", "belgium": "rgb", "orl": "grayscale",
               "yale": "grayscale", "folder": "rgb"}
SYNTHETIC_SIZES = {"train": 120, "test": 30}  # images per class


@dataclasses.dataclass
class DatasetSplit:
    """A loaded split: the batched tf.data pipeline and what a caller needs to know about it."""

    dataset: object  # tf.data.Dataset of (float32 images in [0, 1], int32 labels)
    class_names: list
    num_examples: int
    image_shape: tuple  # (height, width, channels)
    skipped: list  # [(path, reason)] of bad images skipped with on_bad_image="skip"

    @property
    def num_classes(self):
        return len(self.class_names)


def _check(name, split, image_size):
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise UsageError(f"image_size must be (height, width); got {image_size!r}") from None
    if not (4 <= height <= 1024 and 4 <= width <= 1024):
        raise UsageError(f"image_size sides must lie in 4..1024; got {image_size!r}")
    return height, width


def _files(name, data_dir, split, split_seed):
    if name == "gtsrb":
        (paths, labels), root = gtsrb.gtsrb_files(data_dir, split)
        return paths, labels, gtsrb.GTSRB_CLASS_NAMES, root
    if name == "belgium":
        (paths, labels), root = gtsrb.belgium_files(data_dir, split)
        return paths, labels, gtsrb.belgium_class_names(), root
    if name == "orl":
        (paths, labels), names = faces.orl_files(data_dir, split, split_seed)
    elif name == "yale":
        (paths, labels), names = faces.yale_files(data_dir, split, split_seed)
    else:
        (paths, labels), names = folder.folder_files(data_dir, split, split_seed=split_seed)
    return paths, labels, names, data_dir


def load_arrays(name, data_dir=None, split="train", image_size=(32, 32), on_bad_image="fail",
                split_seed=0, synthetic_seed=0, limit=None, use_cache=True, face_crop="none"):
    """The split as uint8 arrays (N, H, W, C) and int32 labels, plus class names (`Arrays`).

    `limit` keeps a random sample of `limit` examples (seeded by `split_seed`, kept in file
    order): the official layouts are sorted by class, so their first N files would hold only the
    first few classes.
    `face_crop` ('none', 'center' or 'mtcnn') crops face images before resizing.
    """
    height, width = _check(name, split, image_size)
    images.check_on_bad_image(on_bad_image)
    if face_crop not in face_alignment.CROPS:
        raise UsageError(
            f"unknown face_crop {face_crop!r}; expected one of {', '.join(face_alignment.CROPS)}"
        )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit must be a positive int or None; got {limit!r}")
    if name == "synthetic":
        per_class = SYNTHETIC_SIZES[split]
        count = synthetic.NUM_CLASSES * per_class if limit is None else min(
            limit, synthetic.NUM_CLASSES * per_class)
        # train and test come from disjoint seed streams
        seed = [synthetic_seed, SPLITS.index(split)]
        pixels, labels = synthetic.generate(count, (height, width), seed=seed)
        return Arrays(pixels, labels, list(synthetic.CLASS_NAMES))
    paths, labels, class_names, root = _files(name, data_dir, split, split_seed)
    color_mode = COLOR_MODES[name]

    def build():
        pixels, kept, skipped = images.read_images(
            paths, labels, (height, width), color_mode, on_bad_image, convert=name == "folder",
            transform=face_alignment.transform(face_crop),
        )
        return Arrays(pixels, kept, list(class_names), skipped)

    options = {"split": split, "size": [height, width], "on_bad_image": on_bad_image,
               "split_seed": split_seed, "face_crop": face_crop}
    if not paths:
        raise DataError(f"{name} in {data_dir}: the {split} split holds no images")
    arrays = cache.cached(name, options, paths, root, build) if use_cache else build()
    if not len(arrays.labels):
        first = arrays.skipped[0] if arrays.skipped else ("?", "?")
        raise DataError(f"{name} in {data_dir}: all {len(paths)} images of the {split} split were "
                        f"skipped as bad (first: {first[0]}: {first[1]})")
    if limit is not None and limit < len(arrays.labels):
        keep = np.sort(np.random.default_rng([split_seed, SPLITS.index(split)]).choice(
            len(arrays.labels), limit, replace=False))
        arrays = Arrays(arrays.images[keep], arrays.labels[keep], arrays.class_names,
                        arrays.skipped)
    return arrays


def load(name, data_dir=None, split="train", image_size=(32, 32), batch_size=128, shuffle=None,
         seed=0, limit=None, on_bad_image="fail", split_seed=0, face_crop="none"):
    """A batched, prefetched tf.data pipeline of (float32 image in [0, 1], int32 label).

    Example:

    >>> split = load("synthetic", split="test", limit=64, batch_size=32)
    >>> split.num_examples, split.image_shape, split.num_classes
    (64, (32, 32, 3), 43)
    """
    arrays = load_arrays(name, data_dir, split, image_size, on_bad_image, split_seed,
                         limit=limit, face_crop=face_crop)
    if shuffle is None:
        shuffle = split == "train"
    dataset = make_dataset(arrays.images, arrays.labels, batch_size, shuffle=shuffle, seed=seed)
    return DatasetSplit(dataset, arrays.class_names, len(arrays.labels),
                        tuple(arrays.images.shape[1:]), arrays.skipped)


__all__ = ["load", "load_arrays", "make_dataset", "DatasetSplit", "Arrays", "DATASETS"]
