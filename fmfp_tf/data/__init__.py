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
import os

import numpy as np

from fmfp_tf.data import cache, face_alignment, images, registry
from fmfp_tf.data.images import Arrays
from fmfp_tf.errors import DataError, UsageError

SPLITS = ("train", "test")


def __getattr__(name):
    # the names as they are now, registered datasets included (not a snapshot taken at import)
    if name == "DATASETS":
        return registry.names()
    if name == "make_dataset":  # imported on use: reading the registry needs no TensorFlow
        from fmfp_tf.data.pipeline import make_dataset

        return make_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    registry.get(name)
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise UsageError(f"image_size must be (height, width); got {image_size!r}") from None
    if not (4 <= height <= 1024 and 4 <= width <= 1024):
        raise UsageError(f"image_size sides must lie in 4..1024; got {image_size!r}")
    return height, width


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
    dataset = registry.get(name)
    if dataset.generate is not None:
        return dataset.generate(split, (height, width), synthetic_seed, limit)
    paths, labels, class_names, root = dataset.files(data_dir, split, split_seed)
    inside = os.path.join(os.path.realpath(root), "")
    for path, label in zip(paths, labels):  # every split, every layout: one line, never deep
        if not 0 <= label < len(class_names):
            raise DataError(f"{path}: label {label} outside 0..{len(class_names) - 1} "
                            f"({name} has {len(class_names)} classes)")
        # confined to the data folder: a linked image or class folder leading out is refused
        if not os.path.realpath(path).startswith(inside):
            raise DataError(f"{path}: leads outside the data folder {root} (through a link); "
                            "data files are read only inside it")

    def build():
        pixels, kept, skipped = images.read_images(
            paths, labels, (height, width), dataset.color_mode, on_bad_image,
            convert=dataset.convert_modes,
            transform=face_alignment.transform(face_crop),
        )
        return Arrays(pixels, kept, list(class_names), skipped)

    options = {"split": split, "size": [height, width], "on_bad_image": on_bad_image,
               "split_seed": split_seed, "face_crop": face_crop}
    if not paths:
        raise DataError(f"{name} in {data_dir}: the {split} split holds no images")
    arrays = (cache.cached(name, options, paths, root, build, labels, class_names) if use_cache
              else build())
    if not len(arrays.labels):
        first = arrays.skipped[0] if arrays.skipped else ("?", "?")
        raise DataError(f"{name} in {data_dir}: all {len(paths)} images of the {split} split were "
                        f"skipped as bad (first: {first[0]}: {first[1]})")
    if dataset.group is not None:
        arrays = dataclasses.replace(arrays, groups=_groups(dataset.group, paths, arrays))
    if limit is not None and limit < len(arrays.labels):
        keep = np.sort(np.random.default_rng([split_seed, SPLITS.index(split)]).choice(
            len(arrays.labels), limit, replace=False))
        arrays = Arrays(arrays.images[keep], arrays.labels[keep], arrays.class_names,
                        arrays.skipped,
                        None if arrays.groups is None else arrays.groups[keep])
    return arrays


def _groups(group, paths, arrays):
    """The group of each kept image: the files' groups less the skipped files'. These are
    matched by their last two path parts, as a cached split may have been read from another
    copy of the folder."""
    def tail(path):
        return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))

    skipped = {tail(path) for path, _ in arrays.skipped}
    groups = np.array([group(path) for path in paths if tail(path) not in skipped])
    return groups if len(groups) == len(arrays.labels) else None


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
    from fmfp_tf.data.pipeline import make_dataset

    if shuffle is None:
        shuffle = split == "train"
    dataset = make_dataset(arrays.images, arrays.labels, batch_size, shuffle=shuffle, seed=seed)
    return DatasetSplit(dataset, arrays.class_names, len(arrays.labels),
                        tuple(arrays.images.shape[1:]), arrays.skipped)


__all__ = ["load", "load_arrays", "make_dataset", "DatasetSplit", "Arrays", "DATASETS", "registry"]
