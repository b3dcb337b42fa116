"""Any image folder with one sub-folder per class, like `keras.utils.image_dataset_from_directory`.

If `data_dir` holds `train/` and `test/` sub-folders, those are the splits (the class list comes
from `train/`). Otherwise each class's files, sorted by name, are permuted with
`numpy.random.default_rng(split_seed)` and the first `test_fraction` of them form the test split.
"""
import os

import numpy as np

from fmfp_tf.data.images import check_data_dir
from fmfp_tf.data.registry import Dataset
from fmfp_tf.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".webp")


def _class_files(root):
    # hidden folders (.git, .ipynb_checkpoints, a .b/ left by a tool) are no classes
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders; expected one folder of images per class")
    files = {}
    for name in classes:
        folder = os.path.join(root, name)
        files[name] = sorted(
            os.path.join(folder, f) for f in os.listdir(folder)
            if f.lower().endswith(EXTENSIONS) and not f.startswith(".")
        )
    if not any(files.values()):
        raise DataError(f"{root}: the class folders hold no images ({', '.join(EXTENSIONS)})")
    empty = [name for name in classes if not files[name]]
    if empty:
        # an empty class would be a label the model can never learn nor be tested on
        raise DataError(f"{root}: class folder(s) {', '.join(empty)} hold no images "
                        f"({', '.join(EXTENSIONS)}); remove them or add images")
    if len(classes) < 2:
        raise DataError(f"{root}: only one class folder ({classes[0]}); a classifier needs at "
                        "least two")
    return classes, files


def folder_files(data_dir, split, test_fraction=0.2, split_seed=0):
    check_data_dir(data_dir,
                   "folder needs data_dir: a folder with one sub-folder of images per class")
    if os.path.isdir(os.path.join(data_dir, "train")) and os.path.isdir(
        os.path.join(data_dir, "test")
    ):
        classes, _ = _class_files(os.path.join(data_dir, "train"))
        _, files = _class_files(os.path.join(data_dir, split))
        unknown = sorted(set(files) - set(classes))
        if unknown:
            raise DataError(
                f"{os.path.join(data_dir, split)}: classes {unknown} are absent from train/"
            )
        paths, labels = [], []
        for index, name in enumerate(classes):
            paths += files.get(name, [])
            labels += [index] * len(files.get(name, []))
        return (paths, labels), classes
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1); got {test_fraction!r}")
    classes, files = _class_files(data_dir)
    rng = np.random.default_rng(split_seed)
    paths, labels = [], []
    for index, name in enumerate(classes):
        order = rng.permutation(len(files[name]))
        n_test = int(round(test_fraction * len(order)))
        chosen = order[:n_test] if split == "test" else order[n_test:]
        paths += [files[name][i] for i in sorted(chosen)]
        labels += [index] * len(chosen)
    return (paths, labels), classes


def _folder_split(data_dir, split, split_seed):
    (paths, labels), classes = folder_files(data_dir, split, split_seed=split_seed)
    return paths, labels, classes, data_dir


DATASET = Dataset("folder", "your own images: one sub-folder per class (or train/ and test/)",
                  files=_folder_split, convert_modes=True)
