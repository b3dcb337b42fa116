"""ORL (AT&T) and Yale face databases, with a deterministic per-subject train/test split.

ORL (Samaria & Harter 1994): `s1/` .. `s40/`, ten `N.pgm` files each (92x112 grey).
Yale (Belhumeur et al. 1997): `subjectNN.<condition>` GIF files (15 subjects x 11 conditions);
a `.gif`/`.png` extension is accepted too, and the official `subject01.gif` counts as
`subject01.centerlight`.

The split: per subject, files are sorted by name and permuted with
`numpy.random.default_rng(split_seed + subject_index)`; the first `test_per_subject` files of the
permutation are the test split (ORL: 3 of 10, Yale: 3 of 11), the rest train. Every subject
appears in both splits, and the same `split_seed` always gives the same split.
"""
import os
import re

import numpy as np

from fmfp_tf.data.images import check_data_dir
from fmfp_tf.data.registry import Dataset
from fmfp_tf.errors import DataError

ORL_SUBJECT = re.compile(r"^s(\d+)$")
YALE_FILE = re.compile(r"^subject(\d\d)(?:\.([a-z]+))?(?:\.(gif|png))?$", re.IGNORECASE)
TEST_PER_SUBJECT = {"orl": 3, "yale": 3}


def _split(files_by_subject, split, test_per_subject, split_seed):
    paths, labels = [], []
    for index, files in enumerate(files_by_subject):
        order = np.random.default_rng(split_seed + index).permutation(len(files))
        test = set(order[:test_per_subject].tolist())
        for position, path in enumerate(sorted(files)):
            if (position in test) == (split == "test"):
                paths.append(path)
                labels.append(index)
    return paths, labels


def _check_dir(data_dir, dataset, layout):
    check_data_dir(data_dir, f"{dataset} needs data_dir: the folder holding {layout}")


def orl_files(data_dir, split, split_seed=0):
    _check_dir(data_dir, "orl", "s1/ .. s40/")
    subjects = []
    for name in os.listdir(data_dir):
        match = ORL_SUBJECT.match(name)
        if match and os.path.isdir(os.path.join(data_dir, name)):
            subjects.append((int(match.group(1)), name))
    if not subjects:
        nested = os.path.join(data_dir, "att_faces")
        if os.path.isdir(nested):
            return orl_files(nested, split, split_seed)
        raise DataError(f"{data_dir}: not the ORL layout; expected folders s1/ .. s40/ of .pgm files")
    subjects.sort()
    files_by_subject, names = [], []
    for _, name in subjects:
        folder = os.path.join(data_dir, name)
        files = [os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".pgm")]
        if len(files) <= TEST_PER_SUBJECT["orl"]:
            raise DataError(
                f"{folder}: {len(files)} .pgm files; need more than {TEST_PER_SUBJECT['orl']} "
                "per subject for a train/test split"
            )
        files_by_subject.append(files)
        names.append(name)
    paths, labels = _split(files_by_subject, split, TEST_PER_SUBJECT["orl"], split_seed)
    return (paths, labels), names


def yale_files(data_dir, split, split_seed=0):
    _check_dir(data_dir, "yale", "subjectNN.<condition> files")
    by_subject = {}
    for name in os.listdir(data_dir):
        match = YALE_FILE.match(name)
        if not match or not os.path.isfile(os.path.join(data_dir, name)):
            continue
        condition = (match.group(2) or "centerlight").lower()
        if condition in ("gif", "png"):
            condition = "centerlight"
        by_subject.setdefault(int(match.group(1)), {})[condition] = os.path.join(data_dir, name)
    if not by_subject:
        nested = os.path.join(data_dir, "yalefaces")
        if os.path.isdir(nested):
            return yale_files(nested, split, split_seed)
        raise DataError(
            f"{data_dir}: not the Yale layout; expected files named subjectNN.<condition>"
        )
    subjects = sorted(by_subject)
    files_by_subject = []
    for subject in subjects:
        files = list(by_subject[subject].values())
        if len(files) <= TEST_PER_SUBJECT["yale"]:
            raise DataError(
                f"{data_dir}: subject{subject:02d} has {len(files)} images; need more than "
                f"{TEST_PER_SUBJECT['yale']} for a train/test split"
            )
        files_by_subject.append(files)
    paths, labels = _split(files_by_subject, split, TEST_PER_SUBJECT["yale"], split_seed)
    return (paths, labels), [f"subject{s:02d}" for s in subjects]


def _orl_split(data_dir, split, split_seed):
    (paths, labels), names = orl_files(data_dir, split, split_seed)
    return paths, labels, names, data_dir


def _yale_split(data_dir, split, split_seed):
    (paths, labels), names = yale_files(data_dir, split, split_seed)
    return paths, labels, names, data_dir


ORL = Dataset("orl", "ORL / AT&T faces, s1..s40/*.pgm (40 subjects)", files=_orl_split,
              color_mode="grayscale", face_crop="mtcnn",
              directory_names=("att_faces", "orl", "ORL"))
YALE = Dataset("yale", "Yale faces, subjectNN.<condition> (15 subjects)", files=_yale_split,
               color_mode="grayscale", face_crop="mtcnn",
               directory_names=("yalefaces", "yale", "Yale"))
