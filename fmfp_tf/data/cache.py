"""A cache of decoded datasets, so that real datasets are decoded from image files only once.

Entries are keyed by the dataset, the options that change the arrays, and a fingerprint of
everything the loader read: the image files (relative paths, sizes and modification times) and
the index it built from its label files or folders (each file's label, the class names), so a
changed label in a CSV invalidates an entry as a changed image does. Entries are written
atomically; an unreadable one (truncated, empty) is rebuilt. Set FMFP_TF_CACHE to choose the folder, or to
`off` to disable the cache.
"""
import hashlib
import json
import os
import zipfile

import numpy as np

from fmfp_tf import atomic
from fmfp_tf.data.images import Arrays

FORMAT_VERSION = 1


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
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                skipped = json.loads(str(data["skipped"]))
                return Arrays(data["images"], data["labels"], [str(c) for c in data["class_names"]],
                              [tuple(s) for s in skipped])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass  # unreadable entry (truncated, empty, foreign): rebuilt and replaced below
    arrays = build()
    try:
        with atomic.atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=arrays.images, labels=arrays.labels,
                         class_names=np.asarray(arrays.class_names, dtype=str),
                         skipped=np.asarray(json.dumps(arrays.skipped)))
    except OSError:
        pass  # a read-only home must not stop a run: the cache is only an optimisation
    return arrays
