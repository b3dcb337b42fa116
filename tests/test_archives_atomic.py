"""Safe archive extraction and atomic outputs."""
import io
import os
import tarfile
import zipfile

import pytest

from fmfp_tf import atomic
from fmfp_tf.data.archives import extract
from fmfp_tf.errors import DataError


def make_zip(path, names):
    with zipfile.ZipFile(path, "w") as handle:
        for name in names:
            handle.writestr(name, b"data")


@pytest.mark.parametrize("bad", ["../evil.txt", "/etc/evil.txt", "a/../../evil.txt"])
def test_zip_members_escaping_are_refused_and_nothing_written(tmp_path, bad):
    archive = tmp_path / "a.zip"
    make_zip(archive, ["GTSRB/ok.txt", bad])
    with pytest.raises(DataError, match="refused"):
        extract(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.txt").exists()


def test_deep_and_overlong_member_names_get_one_line(tmp_path):
    archive = tmp_path / "a.zip"
    make_zip(archive, ["d/" * 2100 + "x.txt"])
    with pytest.raises(DataError, match="nested 2101 levels deep; refused"):
        extract(str(archive), str(tmp_path / "out"))
    make_zip(archive, ["GTSRB/" + "n" * 300 + ".ppm"])
    with pytest.raises(DataError, match="name part of 304 bytes"):
        extract(str(archive), str(tmp_path / "out"))
    make_zip(archive, ["GTSRB/a", "GTSRB/a/b.ppm"])
    with pytest.raises(DataError, match="'GTSRB/a' is both a file and the folder of member"):
        extract(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    # an output path under a regular file names that file, not the archive
    (tmp_path / "afile").write_text("")
    make_zip(archive, ["GTSRB/ok.txt"])
    with pytest.raises(NotADirectoryError) as raised:
        extract(str(archive), str(tmp_path / "afile" / "y" / "out"))
    assert raised.value.filename == str(tmp_path / "afile")


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as handle:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        handle.addfile(info)
    with pytest.raises(DataError, match="link"):
        extract(str(archive), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_good_archives_extract(tmp_path):
    archive = tmp_path / "a.zip"
    make_zip(archive, ["GTSRB/Final_Test/x.txt"])
    extract(str(archive), str(tmp_path / "out"))
    assert (tmp_path / "out" / "GTSRB" / "Final_Test" / "x.txt").read_bytes() == b"data"
    tar_path = tmp_path / "b.tar.gz"
    with tarfile.open(tar_path, "w:gz") as handle:
        info = tarfile.TarInfo("s1/1.pgm")
        info.size = 3
        handle.addfile(info, io.BytesIO(b"abc"))
    extract(str(tar_path), str(tmp_path / "faces"))
    assert (tmp_path / "faces" / "s1" / "1.pgm").read_bytes() == b"abc"
    with pytest.raises(DataError, match="already exists"):
        extract(str(tar_path), str(tmp_path / "faces"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(str(target)) as tmp:
            with open(tmp, "w") as handle:
                handle.write("{half")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == []
    atomic.write_json(str(target), {"a": 1})
    assert target.read_text().strip().startswith("{")
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(str(tmp_path / "dir")) as tmp:
            open(os.path.join(tmp, "f"), "w").close()
            raise RuntimeError("crash")
    assert not (tmp_path / "dir").exists()
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_damaged_archives_and_bombs_get_a_clear_error(tmp_path):
    tar_path = tmp_path / "faces.tar.gz"
    with tarfile.open(tar_path, "w:gz") as handle:
        for i in range(20):
            data = os.urandom(20000)
            info = tarfile.TarInfo(f"s1/{i}.pgm")
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(tar_path.read_bytes()[:150000])
    with pytest.raises(DataError, match="truncated or corrupt archive"):
        extract(str(truncated), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(DataError, match="above the limit.*max_bytes"):
        extract(str(tar_path), str(tmp_path / "out"), max_bytes=100000)
    with pytest.raises(DataError, match="overwrite=True"):
        extract(str(tar_path), str(tmp_path / "out2"))
        extract(str(tar_path), str(tmp_path / "out2"))


def test_outputs_get_the_modes_of_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_json(str(tmp_path / "metrics.json"), {"a": 1})
        with atomic.atomic_directory(str(tmp_path / "export")) as tmp:
            open(os.path.join(tmp, "saved_model.pb"), "w").close()
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "export").stat().st_mode & 0o777 == 0o755


def test_an_extraction_target_has_one_writer_and_a_dead_holder_releases_it(tmp_path):
    import subprocess
    import sys

    from fmfp_tf.errors import UsageError

    archive = tmp_path / "a.zip"
    make_zip(archive, ["GTSRB/x.txt"])
    target = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from fmfp_tf import atomic\n"
         f"with atomic.file_lock(atomic.sibling_lock_path({str(target)!r}), 'x', 'x'):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=f"in use by process {holder.pid}"):
            extract(str(archive), str(target))
        assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    assert extract(str(archive), str(target)) == str(target)
    assert (target / "GTSRB" / "x.txt").read_bytes() == b"data"
    assert atomic.sibling_lock_path(str(target)) == str(tmp_path / ".data.lock")


def test_a_full_disk_is_reported_on_the_final_path_not_a_temporary_one(tmp_path):
    import errno

    target = tmp_path / "model.keras"

    class OpError(Exception):  # what TensorFlow raises: no errno, no file name, just text
        pass

    for failure in (lambda tmp: OSError(errno.ENOSPC, "No space left on device", tmp),
                    lambda tmp: OpError("write failed: No space left on device")):
        with pytest.raises(OSError) as raised:
            with atomic.atomic_path(str(target)) as tmp:
                raise failure(tmp)
        assert raised.value.filename == str(target) and raised.value.errno == errno.ENOSPC
        with pytest.raises(OSError) as raised:
            with atomic.atomic_directory(str(tmp_path / "export")) as tmp:
                raise failure(tmp)
        assert raised.value.filename == str(tmp_path / "export")
    assert sorted(os.listdir(tmp_path)) == []  # nothing half-written left
    with pytest.raises(ValueError):  # other errors pass unchanged
        with atomic.atomic_path(str(target)):
            raise ValueError("not a disk problem")


def test_a_target_that_cannot_be_written_is_not_called_a_corrupt_archive(tmp_path, monkeypatch):
    import errno

    archive = tmp_path / "a.zip"
    make_zip(archive, ["GTSRB/ok.txt"])

    def read_only(self, path, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(path, "GTSRB"))

    monkeypatch.setattr(zipfile.ZipFile, "extractall", read_only)
    with pytest.raises(OSError) as raised:
        extract(str(archive), str(tmp_path / "out"))
    assert raised.value.errno == errno.EROFS and not isinstance(raised.value, DataError)
    assert not (tmp_path / "out").exists()


def test_replacing_a_directory_that_is_a_link_leaves_no_old_copy_and_its_target_whole(tmp_path):
    """overwrite=True over a link (an export version linked elsewhere): the link is replaced by
    the new directory, no hidden `.old` is left beside it, and what it led to is untouched."""
    from fmfp_tf import atomic

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept.txt").write_text("mine")
    link = tmp_path / "base" / "1"
    link.parent.mkdir()
    link.symlink_to(elsewhere, target_is_directory=True)
    with atomic.atomic_directory(str(link), overwrite=True) as tmp:
        with open(f"{tmp}/new.txt", "w") as handle:
            handle.write("new")
    assert not link.is_symlink() and (link / "new.txt").read_text() == "new"
    assert sorted(p.name for p in link.parent.iterdir()) == ["1"]
    assert (elsewhere / "kept.txt").read_text() == "mine"
