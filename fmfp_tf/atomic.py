"""Atomic outputs: a file or directory is either complete at its final path or absent.

Everything is first written beside the target (same filesystem, so the final rename is atomic) and
renamed into place only once complete and flushed.
"""
import contextlib
import errno
import json
import os
import shutil
import tempfile

from fmfp_tf.errors import UsageError


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ordinary_mode(path, directory=False):
    """Gives `path` the mode the user's umask gives a new file or directory (mkstemp and mkdtemp
    create 0600 / 0700, which a rename would carry to the final output: unreadable by a TF
    Serving process running as another user)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_parent(directory):
    """Creates `directory`; a regular file in its way is ENOTDIR naming it (os.makedirs says
    "File exists", which reads as if the output itself were there)."""
    probe = directory
    while probe and not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if probe and os.path.lexists(probe) and not os.path.isdir(probe):
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", probe)
    os.makedirs(directory, exist_ok=True)


@contextlib.contextmanager
def _naming_the_target(path):
    """A full disk met while writing `path` (by Keras, TensorFlow or us, often on a temporary
    name or with no name at all) is reported as an OSError naming `path`."""
    from fmfp_tf.errors import is_storage_full, storage_full_reason

    try:
        yield
    except Exception as error:  # noqa: BLE001 - only storage-full errors are renamed
        if not is_storage_full(error) or getattr(error, "filename", None) == path:
            raise
        raise OSError(getattr(error, "errno", None) or errno.ENOSPC, storage_full_reason(error),
                      path) from error


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yields a temporary file path beside `path`; renames it to `path` if the block succeeds.

    The temporary name keeps `suffix` (default: the target's extension), for writers that insist
    on one, such as `keras.Model.save` and its `.keras`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    make_parent(directory)
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}",
                               dir=directory)
    os.close(fd)
    try:
        with _naming_the_target(path):
            yield tmp
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        ordinary_mode(tmp)
        os.replace(tmp, path)
        _fsync_dir(directory)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yields a temporary directory beside `path`; renames it to `path` if the block succeeds.

    With `overwrite`, an existing `path` is replaced (moved aside first, removed after the rename);
    without it, an existing `path` raises FileExistsError before anything is written.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    make_parent(parent)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(path)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with _naming_the_target(path):
            yield tmp
        ordinary_mode(tmp, directory=True)
        old = None
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(parent)
        if old:
            if os.path.islink(old):  # a link replaced: the link goes, what it led to stays
                os.unlink(old)
            else:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def sibling_lock_path(target):
    """The lock file of a target that does not exist until it is complete (an extracted
    dataset): a hidden file beside it, `.NAME.lock`."""
    parent, name = os.path.split(os.path.abspath(target))
    return os.path.join(parent, f".{name}.lock")


@contextlib.contextmanager
def file_lock(lock_path, target, what):
    """An advisory `flock` on `lock_path` naming `target` in the error; the kernel releases it
    when the holder dies, so a crash never leaves a stale lock. The file is removed when the
    lock is released, so a finished run or export holds no `.lock`; a holder checks that the
    path still names the file it locked (a releasing holder may have just removed it)."""
    import fcntl

    os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
    for _ in range(100):
        handle = _open_lock_file(lock_path, target)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise UsageError(f"{target}: {what} in use by process {_holder(lock_path)}; wait "
                             "for it to finish or choose another directory") from None
        if _names(lock_path, handle):
            break
        handle.close()  # locked a file its holder removed on release: take the new one
    else:
        raise UsageError(f"{lock_path}: the lock file keeps being replaced; is another process "
                         f"creating it? ({target})")
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        try:
            if _names(lock_path, handle):
                os.unlink(lock_path)  # while still held: the next holder makes a fresh one
        except OSError:
            pass  # a read-only folder keeps its lock file; the lock is released all the same
        handle.close()  # closing releases the lock


def _open_lock_file(lock_path, target):
    try:
        # never through a link: a planted symlink would have the pid written into its target
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP or os.path.islink(lock_path):
            raise UsageError(f"{lock_path}: the lock file is a symbolic link; a lock is never "
                             f"written through a link: remove it to use {target}") from None
        raise
    return os.fdopen(fd, "r+", encoding="utf-8")


def _names(lock_path, handle):
    """Whether `lock_path` is still the file open in `handle`."""
    try:
        here = os.stat(lock_path, follow_symlinks=False)
    except OSError:
        return False
    held = os.fstat(handle.fileno())
    return (here.st_ino, here.st_dev) == (held.st_ino, held.st_dev)


def _holder(lock_path):
    try:
        with open(lock_path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip() or "unknown"
    except OSError:
        return "unknown"


def not_a_file(path):
    """What stands at `path` instead of a regular file, in words; None for a regular file."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as error:  # a link loop, or a link to nothing
        return "a link that loops" if error.errno == errno.ELOOP else "a link to nothing"
    if stat.S_ISREG(mode):
        return None
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a pipe (FIFO)"),
                        (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def check_regular_file(path, what):
    """A DataError naming why `path` is no `what` to read: missing, a folder, or not a regular
    file (a FIFO would hang the reader; a device or socket is no file)."""
    from fmfp_tf.errors import DataError

    if not os.path.lexists(path):
        raise DataError(f"{path}: {what} not found")
    words = not_a_file(path)
    if words == "a folder":
        article = "an" if what[:1] in "aeiou" else "a"
        raise DataError(f"{path}: is a folder, not {article} {what} file")
    if words is not None:
        raise DataError(f"{path}: is {words}, not a regular {what} file")
