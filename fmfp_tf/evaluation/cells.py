"""Finished cells of an evaluation, kept on disk as they finish, so that nothing done is redone.

A cell is one (model, threat model, attack, eps) measurement: its record and which images
survived (for the per-image worst case). Each cell is one small JSON file under `OUT/cells/`,
written atomically the moment the cell is done, so a crash, Ctrl-C or a later error keeps every
finished cell, and the same evaluation run again computes only the missing ones.

A cell's key is a digest of everything its number depends on: the model file's content, the
crafting model's (transfer), the test images, the attack and its parameters, the eps and the
EOT samples. Anything changed gives another key, so a stale cell is never read back.

A cell that runs for hours (AutoAttack) also keeps its stages under `OUT/cells/stages/`: arrays
saved after each attack of the ensemble, read back when the same cell is run again after an
interruption, and removed when the cell is done.
"""
import glob
import hashlib
import io
import json
import os

import numpy as np

from fmfp_tf import atomic

FORMAT = 1


def file_digest(path):
    """sha256 of a model file (or of a SavedModel's files), read in blocks."""
    digest = hashlib.sha256()
    paths = [path]
    if os.path.isdir(path):
        paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path)
                       for name in names)
    for name in paths:
        digest.update(os.path.relpath(name, path).encode() if name != path else b"")
        with open(name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def cell_key(**parts):
    """A short digest naming a cell: the JSON of its parts, keys sorted."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class CellStore:
    """The finished cells under `folder` (created on the first write)."""

    def __init__(self, folder):
        self.folder = folder

    def _path(self, key):
        return os.path.join(self.folder, f"{key}.json")

    def get(self, key):
        """(record, per-image survival as a bool array or None), or None when not done."""
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            record = saved["record"]
            correct = saved.get("correct")
            if correct is not None:
                bits = np.unpackbits(np.frombuffer(bytes.fromhex(correct["bits"]), np.uint8))
                correct = bits[:correct["n"]].astype(bool)
            return record, correct
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged cell is measured again, and replaced

    def stages(self, key):
        """Where the cell `key` keeps its finished stages until it is done."""
        return _Stages(os.path.join(self.folder, "stages"), key)

    def put(self, key, record, correct=None):
        saved = {"record": record}
        if correct is not None:
            correct = np.asarray(correct, bool)
            saved["correct"] = {"n": int(len(correct)),
                                "bits": np.packbits(correct).tobytes().hex()}
        atomic.write_json(self._path(key), saved)
        _Stages(os.path.join(self.folder, "stages"), key).clear()

    def count(self):
        """Finished cells; a kill during a write leaves a hidden temporary file, never a cell."""
        if not os.path.isdir(self.folder):
            return 0
        return sum(name.endswith(".json") and not name.startswith(".")
                   for name in os.listdir(self.folder))


class _Stages:
    """The stages of one cell, one `.npz` per stage, each written atomically."""

    def __init__(self, folder, key):
        self.folder, self.key = folder, key

    def _path(self, name):
        return os.path.join(self.folder, f"{self.key}.{name}.npz")

    def save(self, name, arrays):
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic.write_bytes(self._path(name), buffer.getvalue())

    def load(self, name):
        """The arrays saved as `name` (a dict), or None when none or damaged."""
        try:
            with np.load(self._path(name), allow_pickle=False) as saved:
                return {field: saved[field] for field in saved.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError):
            return None  # a damaged stage is run again

    def clear(self):
        for path in glob.glob(os.path.join(glob.escape(self.folder), f"{self.key}.*.npz")):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
