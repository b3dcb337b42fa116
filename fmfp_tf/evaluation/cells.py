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

A cell is checked before it is believed: it carries the parts its key was made from, which must
hash to its file name (a cell renamed onto another key is refused), its record must name the
attack, threat model and eps of those parts, its accuracy must follow from its per-image bits
and its passes be counts; a symbolic link is never read. A cell that fails is measured again,
and the caller is told why in one line. (Cells written before parts were kept are checked for
everything but the parts.)
"""
import math
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


class DamagedCell(ValueError):
    """A kept cell that is not to be believed; its message says why."""


def _json_form(parts):
    """The parts as they read back from JSON (tuples become lists), for comparing."""
    return json.loads(json.dumps(parts, sort_keys=True, default=str))


def check(saved, key, parts=None):
    """(record, bits or None) of a cell read from disk, or DamagedCell naming what is wrong."""
    if not isinstance(saved, dict) or not isinstance(saved.get("record"), dict):
        raise DamagedCell("not a cell (no record)")
    record = saved["record"]
    kept_parts = saved.get("parts")
    if kept_parts is not None:
        if not isinstance(kept_parts, dict) or cell_key(**kept_parts) != key:
            raise DamagedCell("a cell of another measurement (its parts do not give its name)")
        if parts is not None and kept_parts != _json_form(parts):
            raise DamagedCell("a cell of another measurement (its parts differ)")
        for field in ("attack", "threat", "eps"):
            recorded = record.get("threat_model" if field == "threat" else field)
            if field in kept_parts and recorded != kept_parts[field]:
                raise DamagedCell(f"its record's {field} {recorded!r} is not its key's "
                                  f"{kept_parts[field]!r}")
    accuracy, n = record.get("accuracy"), record.get("n")
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not (
            math.isfinite(accuracy) and 0 <= accuracy <= 1):
        raise DamagedCell(f"its accuracy {accuracy!r} is not a number in [0, 1]")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DamagedCell(f"its image count {n!r} is not a positive integer")
    passes = record.get("passes")
    if passes is not None and not (isinstance(passes, dict) and all(
            isinstance(passes.get(k), int) and not isinstance(passes.get(k), bool)
            and passes[k] >= 0 for k in ("forward", "backward"))):
        raise DamagedCell(f"its passes {passes!r} are not two counts")
    correct = saved.get("correct")
    if correct is None:
        return record, None
    try:
        raw = bytes.fromhex(correct["bits"])
        count = correct["n"]
    except (TypeError, KeyError, ValueError):
        raise DamagedCell("its per-image results are unreadable") from None
    if count != n or len(raw) != (n + 7) // 8:
        raise DamagedCell(f"it holds per-image results for {count!r} images, its record says {n}")
    bits = np.unpackbits(np.frombuffer(raw, np.uint8))[:n].astype(bool)
    if abs(float(bits.mean()) - accuracy) > 1e-9:
        raise DamagedCell(f"its accuracy {accuracy!r} does not follow from its per-image "
                          f"results ({float(bits.mean()):.4f})")
    return record, bits


class CellStore:
    """The finished cells under `folder` (created on the first write)."""

    def __init__(self, folder):
        self.folder = folder

    def _path(self, key):
        return os.path.join(self.folder, f"{key}.json")

    def get(self, key, parts=None, on_damage=None):
        """(record, per-image survival as a bool array or None), or None when not done or not
        to be believed: `parts` (those `cell_key` made `key` from) must be the cell's own;
        `on_damage(path, reason)` hears why a cell present was not believed (it is then
        measured again and replaced)."""
        found = self._read(key, parts, on_damage)
        return found and found[:2]

    def kept(self, on_damage=None):
        """(record, per-image survival or None, the parts of its key) of every finished cell
        that is to be believed, in name order: what a reader of a whole folder joins (shards,
        benchmarks). A cell not believed is left out; `on_damage(path, reason)` hears why."""
        if not os.path.isdir(self.folder):
            return
        for name in sorted(os.listdir(self.folder)):
            if name.endswith(".json") and not name.startswith("."):
                found = self._read(name[:-len(".json")], None, on_damage)
                if found is not None:
                    yield found

    def _read(self, key, parts, on_damage):
        path = self._path(key)
        try:
            if os.path.islink(path):
                raise DamagedCell("a symbolic link (cells are never read through links)")
            with open(path, encoding="utf-8") as handle:
                saved = json.load(handle)
            return (*check(saved, key, parts), saved.get("parts") or {})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as error:
            if on_damage is not None:
                on_damage(path, str(error) if isinstance(error, DamagedCell)
                          else f"unreadable ({type(error).__name__})")
            return None

    def stages(self, key):
        """Where the cell `key` keeps its finished stages until it is done."""
        return _Stages(os.path.join(self.folder, "stages"), key)

    def put(self, key, record, correct=None, parts=None):
        """Keeps a finished cell: its record, per-image survival and the parts of its key."""
        saved = {"record": record}
        if parts is not None:
            saved["parts"] = _json_form(parts)
        if correct is not None:
            correct = np.asarray(correct, bool)
            saved["correct"] = {"n": int(len(correct)),
                                "bits": np.packbits(correct).tobytes().hex()}
        atomic.write_json(self._path(key), saved)
        _Stages(os.path.join(self.folder, "stages"), key).clear()

    def stages_kept(self):
        """How many unfinished cells have finished stages kept (an ensemble stopped midway)."""
        folder = os.path.join(self.folder, "stages")
        if not os.path.isdir(folder):
            return 0
        return len({name.split(".")[0] for name in os.listdir(folder)
                    if name.endswith(".npz") and not name.startswith(".")})

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
