"""A cache of decoded datasets, so that real datasets are decoded from image files only once.

Entries are keyed by the dataset, the options that change the arrays, and a fingerprint of the
source files (relative paths, sizes and modification times), so any change to the data on disk
invalidates them. Entries are written atomically. Set FMFP_TF_CACHE to choose the folder, or to
`off` to disable the cache.
"""
import hashlib
import json
import os

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


def fingerprint(paths, root):
    digest = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        stat = os.stat(path)
        digest.update(f"{os.path.relpath(path, root)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def _key(name, options, source_fingerprint):
    payload = json.dumps({"v": FORMAT_VERSION, "name": name, "options": options,
                          "source": source_fingerprint}, sort_keys=True)
    return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:20]}.npz"


def cached(name, options, source_files, root, build):
    """Returns the cached Arrays for this key, or builds, stores and returns them."""
    directory = cache_dir()
    if directory is None:
        return build()
    path = os.path.join(directory, _key(name, options, fingerprint(source_files, root)))
    if os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                skipped = json.loads(str(data["skipped"]))
                return Arrays(data["images"], data["labels"], [str(c) for c in data["class_names"]],
                              [tuple(s) for s in skipped])
        except (OSError, ValueError, KeyError):
            pass  # unreadable entry: rebuild it below
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
