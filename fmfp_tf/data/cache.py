"""A cache of decoded datasets, so that real datasets are decoded from image files only once.

Entries are keyed by the dataset, the options that change the arrays, and a fingerprint of
everything the loader read: the image files (relative paths, sizes and modification times) and
the index it built from its label files or folders (each file's label, the class names), so a
changed label in a CSV invalidates an entry as a changed image does. Entries are written
atomically; an unreadable one (truncated, empty) is rebuilt, and so is one that does not check
out against its key (its own key inside, the image size and dtype, the labels of the index): a
planted or renamed entry is never served. Set FMFP_TF_CACHE to choose the folder, or to
`off` to disable the cache.
"""
import hashlib
import json
import os
import zipfile

import numpy as np

from fmfp_tf import atomic
from fmfp_tf.data.images import Arrays

FORMAT_VERSION = 1  # entries without their own key are not believed (rebuilt once)


def cache_dir():
    value = os.environ.get("FMFP_TF_CACHE")
    if value == "off":
        return None
    if value:
        return value
    return os.path.join(os.path.expanduser("~"), ".cache", "fmfp_tf")


def fingerprint(paths, root, labels=None, class_names=None):
    """A digest of the files (path, size, mtime) and of the index: which label each file has."""
    digest = hashlib.sha256()
    labels = [None] * len(paths) if labels is None else [int(label) for label in labels]
    for path, label in sorted(zip((str(p) for p in paths), labels)):
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}|{stat.st_size}|{stat.st_mtime_ns}|"
                      f"{label}\n".encode())
    digest.update(json.dumps(list(class_names or [])).encode())
    return digest.hexdigest()[:20]


def _key(name, options, source_fingerprint):
    payload = json.dumps({"v": FORMAT_VERSION, "name": name, "options": options,
                          "source": source_fingerprint}, sort_keys=True)
    return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}.npz"


def cached(name, options, source_files, root, build, labels=None, class_names=None):
    """Returns the cached Arrays for this key, or builds, stores and returns them. `labels` and
    `class_names`: the index the loader read beside the files (part of the key)."""
    directory = cache_dir()
    if directory is None:
        return build()
    path = os.path.join(directory, _key(name, options, fingerprint(source_files, root, labels,
                                                                   class_names)))
    key = os.path.basename(path)
    # only a regular file is read: a FIFO would hang the loader, a link could point anywhere
    if os.path.isfile(path) and not os.path.islink(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                skipped = json.loads(str(data["skipped"]))
                arrays = Arrays(data["images"], data["labels"],
                                [str(c) for c in data["class_names"]],
                                [tuple(s) for s in skipped])
                if _belongs(arrays, str(data["key"]), key, options, labels, class_names):
                    return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable entry (truncated, empty, foreign): rebuilt and replaced below
    arrays = build()
    try:
        with atomic.atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=arrays.images, labels=arrays.labels,
                         class_names=np.asarray(arrays.class_names, dtype=str),
                         skipped=np.asarray(json.dumps(arrays.skipped)),
                         key=np.asarray(key))
    except OSError:
        pass  # a read-only home must not stop a run: the cache is only an optimisation
    return arrays


def _belongs(arrays, saved_key, key, options, labels, class_names):
    """Whether an entry read back is what this key stands for: written under this key, uint8
    images of the size asked for, one int label per image, in range, and (no image skipped)
    the very labels the loader's index gives. A planted or renamed entry is rebuilt."""
    images, found = arrays.images, np.asarray(arrays.labels)
    height, width = options.get("size", (None, None))
    if saved_key != key or images.dtype != np.uint8 or images.ndim != 4:
        return False
    if images.shape[1:3] != (height, width) or images.shape[-1] not in (1, 3):
        return False
    if found.ndim != 1 or len(found) != len(images) or not np.issubdtype(found.dtype, np.integer):
        return False
    if class_names is not None and list(arrays.class_names) != [str(c) for c in class_names]:
        return False
    if len(found) and (found.min() < 0 or found.max() >= len(arrays.class_names)):
        return False
    if labels is not None:
        if len(found) + len(arrays.skipped) != len(labels):
            return False
        if not arrays.skipped and not np.array_equal(found, np.asarray(labels)):
            return False
    return True
