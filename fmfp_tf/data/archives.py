"""Extracting the official dataset archives (zip, tar) safely.

Every member must land inside the target directory: absolute paths, `..` components, and
symbolic or hard links (which could point outside) are rejected before anything is written.
Extraction goes to a temporary directory that is renamed into place when complete.
"""
import os
import tarfile
import zipfile

from fmfp_tf import atomic
from fmfp_tf.errors import DataError


def _check_member(archive, name):
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise DataError(f"{archive}: member {name!r} has an absolute path; refused")
    if ".." in normalised.split("/"):
        raise DataError(f"{archive}: member {name!r} escapes the target directory; refused")


def _members(archive):
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                _check_member(archive, info.filename)
                mode = (info.external_attr >> 16) & 0o170000
                if mode == 0o120000:
                    raise DataError(f"{archive}: member {info.filename!r} is a symbolic link; "
                                    "refused")
        return "zip"
    try:
        with tarfile.open(archive) as handle:
            for member in handle.getmembers():
                _check_member(archive, member.name)
                if member.issym() or member.islnk():
                    raise DataError(f"{archive}: member {member.name!r} is a link; refused")
                if not (member.isfile() or member.isdir()):
                    raise DataError(f"{archive}: member {member.name!r} is not a regular file; "
                                    "refused")
        return "tar"
    except tarfile.TarError:
        raise DataError(f"{archive}: not a zip or tar archive") from None


def extract(archive, target, overwrite=False):
    """Extracts `archive` to `target` (created whole, atomically); returns `target`."""
    if not os.path.isfile(archive):
        raise DataError(f"{archive}: archive not found")
    kind = _members(archive)
    try:
        with atomic.atomic_directory(target, overwrite=overwrite) as tmp:
            if kind == "zip":
                with zipfile.ZipFile(archive) as handle:
                    handle.extractall(tmp)
            else:
                # the "data" filter (Python >= 3.11.4) re-checks every member on extraction
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                with tarfile.open(archive) as handle:
                    handle.extractall(tmp, **options)
    except FileExistsError:
        raise DataError(f"{target}: already exists") from None
    return target
