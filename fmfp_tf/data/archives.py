"""Extracting the official dataset archives (zip, tar) safely.

Every member must land inside the target directory: absolute paths, `..` components, and
symbolic or hard links (which could point outside) are rejected before anything is written.
Extraction goes to a temporary directory that is renamed into place when complete.
"""
import os
import tarfile
import zipfile
import zlib

from fmfp_tf import atomic
from fmfp_tf.errors import DataError

# the official GTSRB, BelgiumTSC, ORL and Yale archives unpack to well under 1 GiB together
DEFAULT_MAX_BYTES = 8 * 2**30
# deeper than any dataset layout, shallow enough for the recursive os.makedirs of extraction
MAX_DEPTH = 64
NAME_MAX = 255  # bytes in one path component, the limit of common file systems
# what a damaged archive raises while being read: a truncated gzip stream ends in EOFError
_DAMAGED = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


def _check_total(archive, total, max_bytes):
    if total > max_bytes:
        raise DataError(f"{archive}: would extract {total / 2**30:.2f} GiB, above the limit of "
                        f"{max_bytes / 2**30:.2f} GiB (raise max_bytes if the archive is "
                        "trusted)", {"raise max_bytes": "max_bytes"})


def _check_member(archive, name):
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise DataError(f"{archive}: member {name!r} has an absolute path; refused")
    parts = normalised.split("/")
    if ".." in parts:
        raise DataError(f"{archive}: member {name!r} escapes the target directory; refused")
    if len(parts) > MAX_DEPTH:
        raise DataError(f"{archive}: member {name[:80]!r}... is nested {len(parts)} levels deep; "
                        f"refused (the limit is {MAX_DEPTH})")
    longest = max(parts, key=lambda part: len(part.encode("utf-8", "surrogateescape")))
    if len(longest.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise DataError(f"{archive}: member {name[:80]!r}... has a name part of "
                        f"{len(longest.encode('utf-8', 'surrogateescape'))} bytes; file systems "
                        f"take at most {NAME_MAX}")


def _check_layout(archive, entries):
    """`entries`: (name, is a directory). A name that is a file and also holds other members
    cannot be extracted: refused by name before anything is written."""
    files, folders = set(), set()
    for name, is_dir in entries:
        normalised = name.replace("\\", "/").strip("/")
        if not is_dir and normalised in files:  # the second would silently replace the first
            raise DataError(f"{archive}: member {name!r} appears twice; refused (which one is "
                            "meant is not known)")
        (folders if is_dir else files).add(normalised)
    both = sorted(files & folders)
    if both:
        raise DataError(f"{archive}: {both[0]!r} is both a file and a folder member; refused")
    for name, _ in entries:
        parts = name.replace("\\", "/").strip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in files:
                raise DataError(f"{archive}: {folder!r} is both a file and the folder of member "
                                f"{name!r}; refused")


def _members(archive, max_bytes=DEFAULT_MAX_BYTES):
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                _check_member(archive, info.filename)
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise DataError(f"{archive}: member {info.filename!r} is a symbolic link; "
                                    "refused")
            _check_total(archive, sum(info.file_size for info in handle.infolist()), max_bytes)
            _check_layout(archive, [(info.filename, info.is_dir()) for info in handle.infolist()])
        return "zip"
    try:
        with tarfile.open(archive) as handle:
            members = handle.getmembers()
            _check_total(archive, sum(m.size for m in members), max_bytes)
            for member in members:
                _check_member(archive, member.name)
                if member.issym() or member.islnk():
                    raise DataError(f"{archive}: member {member.name!r} is a link; refused")
                if not (member.isfile() or member.isdir()):
                    raise DataError(f"{archive}: member {member.name!r} is not a regular file; "
                                    "refused")
            _check_layout(archive, [(member.name, member.isdir()) for member in members])
        return "tar"
    except tarfile.ReadError:
        raise DataError(f"{archive}: not a zip or tar archive") from None
    except _DAMAGED as error:
        raise DataError(f"{archive}: truncated or corrupt archive ({error})") from None


def extract(archive, target, overwrite=False, max_bytes=DEFAULT_MAX_BYTES):
    """Extracts `archive` to `target` (created whole, atomically); returns `target`.

    `max_bytes` caps the total size the members declare (a zip bomb is refused before anything
    is written).
    """
    atomic.check_regular_file(archive, "archive")
    kind = _members(archive, max_bytes)
    atomic.make_parent(os.path.dirname(os.path.abspath(target)))  # a file in the way: ENOTDIR
    try:
        with atomic.file_lock(atomic.sibling_lock_path(target), target, "extraction target"), \
                atomic.atomic_directory(target, overwrite=overwrite) as tmp:
            if kind == "zip":
                with zipfile.ZipFile(archive) as handle:
                    handle.extractall(tmp)
            else:
                # the "data" filter (Python >= 3.11.4) re-checks every member on extraction
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                with tarfile.open(archive) as handle:
                    handle.extractall(tmp, **options)
    except FileExistsError:
        raise DataError(f"{target}: already exists; pass overwrite=True to replace it",
                        {"overwrite=True": "overwrite"}) from None
    except DataError:
        raise
    except _DAMAGED as error:
        if isinstance(error, OSError) and error.filename and os.fspath(error.filename) != archive:
            raise  # the target side (permissions, a read-only disk): the path is the message
        raise DataError(f"{archive}: truncated or corrupt archive ({error})") from None
    return target
