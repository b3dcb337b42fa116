"""Dataset loaders on fixtures written in each official layout, and on the real data when present."""
import os

import numpy as np
import pytest
from PIL import Image

from fmfp_tf import data
from fmfp_tf.errors import DataError, UsageError
from tests.conftest import shared_dataset


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setenv("FMFP_TF_CACHE", "off")


def write_ppm(path, size=(40, 30), value=100, mode="RGB"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new(mode, size, (value,) * (3 if mode == "RGB" else 1) if mode != "L" else value).save(
        path, format="PPM" if path.endswith(".ppm") else None)


def gtsrb_fixture(root, classes=(0, 5, 42), per_class=2, test=4):
    base = os.path.join(root, "GTSRB")
    for c in classes:
        folder = os.path.join(base, "Final_Training", "Images", f"{c:05d}")
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for i in range(per_class):
            name = f"00000_{i:05d}.ppm"
            write_ppm(os.path.join(folder, name), value=10 * c + i)
            rows.append(f"{name};99;99;1;1;20;20;{c}")  # CSV sizes deliberately wrong
        with open(os.path.join(folder, f"GT-{c:05d}.csv"), "w") as handle:
            handle.write("\n".join(rows) + "\n")
    test_dir = os.path.join(base, "Final_Test", "Images")
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    for i in range(test):
        write_ppm(os.path.join(test_dir, f"{i:05d}.ppm"), size=(25, 35))
        rows.append(f"{i:05d}.ppm;1;1;0;0;1;1;{classes[i % len(classes)]}")
    with open(os.path.join(base, "Final_Test", "GT-final_test.csv"), "w") as handle:
        handle.write("\n".join(rows) + "\n")
    return base


def test_gtsrb_official_layout_both_roots(tmp_path):
    base = gtsrb_fixture(str(tmp_path))
    for root in (str(tmp_path), base):
        train = data.load_arrays("gtsrb", root, "train", (32, 32))
        assert train.images.shape == (6, 32, 32, 3)
        assert sorted(train.labels.tolist()) == [0, 0, 5, 5, 42, 42]
        assert len(train.class_names) == 43
    test = data.load_arrays("gtsrb", str(tmp_path), "test", (16, 16))
    assert test.images.shape == (4, 16, 16, 3) and test.labels.tolist() == [0, 5, 42, 0]


def test_limit_is_a_seeded_sample_across_classes(tmp_path):
    # the official layout is sorted by class: the first N files would hold one class only
    gtsrb_fixture(str(tmp_path), classes=(0, 5, 42), per_class=4)
    first = data.load_arrays("gtsrb", str(tmp_path), "train", (16, 16), limit=6)
    again = data.load_arrays("gtsrb", str(tmp_path), "train", (16, 16), limit=6)
    assert len(first.labels) == 6 and len(set(first.labels.tolist())) >= 2
    np.testing.assert_array_equal(first.images, again.images)
    assert first.labels.tolist() == sorted(first.labels.tolist())  # kept in file order
    other = data.load_arrays("gtsrb", str(tmp_path), "train", (16, 16), limit=6, split_seed=1)
    assert not np.array_equal(other.images, first.images)


def test_load_gives_batched_float_pipeline(tmp_path):
    gtsrb_fixture(str(tmp_path))
    split = data.load("gtsrb", str(tmp_path), "train", batch_size=4)
    batches = list(split.dataset)
    assert [int(b[0].shape[0]) for b in batches] == [4, 2]
    x, y = batches[0]
    assert x.dtype.name == "float32" and 0.0 <= float(x.numpy().min()) <= float(x.numpy().max()) <= 1.0
    assert y.dtype.name == "int32" and split.num_classes == 43 and split.num_examples == 6


def test_belgium_layout(tmp_path):
    for split, folder in (("train", "Training"), ("test", "Testing")):
        for c in (0, 61):
            d = tmp_path / folder / f"{c:05d}"
            write_ppm(str(d / "01.ppm"))
            (d / f"GT-{c:05d}.csv").write_text(
                "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
                f"01.ppm;40;30;0;0;1;1;{c}\n")
    arrays = data.load_arrays("belgium", str(tmp_path), "test")
    assert arrays.labels.tolist() == [0, 61] and len(arrays.class_names) == 62


def test_orl_and_yale_layouts_split_per_subject(tmp_path):
    orl = tmp_path / "orl"
    for s in range(1, 4):
        for i in range(1, 11):
            write_ppm(str(orl / f"s{s}" / f"{i}.pgm"), size=(92, 112), mode="L", value=s * 20 + i)
    train = data.load_arrays("orl", str(orl), "train")
    test = data.load_arrays("orl", str(orl), "test")
    assert train.images.shape == (21, 32, 32, 1) and test.images.shape == (9, 32, 32, 1)
    assert np.bincount(test.labels).tolist() == [3, 3, 3]
    # deterministic, and disjoint: no test image value appears in train for the same subject
    again = data.load_arrays("orl", str(orl), "test")
    np.testing.assert_array_equal(again.images, test.images)
    assert not set(map(bytes, test.images.reshape(9, -1)[:, :1])) & set(
        map(bytes, train.images.reshape(21, -1)[:, :1]))

    yale = tmp_path / "yale"
    yale.mkdir()
    conditions = ["centerlight", "glasses", "happy", "leftlight", "noglasses", "normal",
                  "rightlight", "sad", "sleepy", "surprised", "wink"]
    for s in (1, 2):
        for c in conditions:
            path = str(yale / f"subject{s:02d}.{c}")
            Image.new("L", (320, 243), 50).save(path, format="GIF")
    (yale / "Readme.txt").write_text("not an image")
    assert data.load_arrays("yale", str(yale), "train").images.shape == (16, 32, 32, 1)
    assert data.load_arrays("yale", str(yale), "test").labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_folder_layout(tmp_path):
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (20, 20), (i * 10, 0, 0)).save(tmp_path / c / f"{i}.png")
    train = data.load_arrays("folder", str(tmp_path), "train")
    test = data.load_arrays("folder", str(tmp_path), "test")
    assert train.class_names == ["cat", "dog"] and len(train.labels) == 8 and len(test.labels) == 2


def test_synthetic_is_deterministic_balanced_and_not_trivial():
    a = data.load_arrays("synthetic", split="train", limit=430)
    b = data.load_arrays("synthetic", split="train", limit=430)
    test = data.load_arrays("synthetic", split="test", limit=430)
    np.testing.assert_array_equal(a.images, b.images)
    assert np.bincount(a.labels, minlength=43).tolist() == [10] * 43
    assert not np.array_equal(a.images[:10], test.images[:10])
    # images of one class differ from each other (pose, light, background, noise)
    same = a.images[a.labels == 0].astype(float)
    assert np.abs(same[0] - same[1]).mean() > 10
    # a nearest-class-mean classifier on raw pixels is far from perfect
    means = np.stack([a.images[a.labels == c].reshape(10, -1).mean(0) for c in range(43)])
    flat = test.images.reshape(len(test.images), -1).astype(float)
    predicted = np.argmin(((flat[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == test.labels).mean() < 0.5


@pytest.mark.parametrize("case", ["missing", "empty", "wrong_layout", "missing_file", "csv"])
def test_bad_directories_give_clear_errors(tmp_path, case):
    if case == "missing":
        root, match = str(tmp_path / "nope"), "not found"
    elif case == "empty":
        root, match = str(tmp_path), "not the GTSRB layout"
    elif case == "wrong_layout":
        (tmp_path / "something").mkdir()
        root, match = str(tmp_path), "not the GTSRB layout"
    else:
        base = gtsrb_fixture(str(tmp_path))
        folder = os.path.join(base, "Final_Training", "Images", "00005")
        if case == "missing_file":
            os.remove(os.path.join(folder, "00000_00001.ppm"))
            match = "missing file"
        else:
            with open(os.path.join(folder, "GT-00005.csv"), "w") as handle:
                handle.write("a,b\n1,2\n")
            match = "Filename and ClassId"
        root = str(tmp_path)
    with pytest.raises(DataError, match=match):
        data.load_arrays("gtsrb", root, "train")


@pytest.mark.parametrize("problem", ["zero", "truncated", "garbage", "rgba", "grey", "bomb"])
def test_bad_images_fail_or_are_skipped(tmp_path, problem):
    base = gtsrb_fixture(str(tmp_path))
    path = os.path.join(base, "Final_Training", "Images", "00000", "00000_00001.ppm")
    if problem == "zero":
        open(path, "wb").close()
    elif problem == "truncated":
        with open(path, "rb") as handle:
            content = handle.read()
        with open(path, "wb") as handle:
            handle.write(content[: len(content) // 3])
    elif problem == "garbage":
        with open(path, "wb") as handle:
            handle.write(b"not an image at all")
    elif problem == "rgba":
        os.remove(path)
        Image.new("RGBA", (20, 20)).save(path, format="PNG")
    elif problem == "bomb":  # a header claiming 20000 x 20000 pixels: Pillow's bomb check
        with open(path, "wb") as handle:
            handle.write(b"P6\n20000 20000\n255\n" + b"\0" * 64)
    else:
        os.remove(path)
        Image.new("L", (20, 20)).save(path, format="PPM")
    with pytest.raises(DataError, match="00000_00001.ppm") as raised:
        data.load_arrays("gtsrb", str(tmp_path), "train")
    if problem == "bomb":
        assert "MAX_IMAGE_PIXELS" in str(raised.value)
    arrays = data.load_arrays("gtsrb", str(tmp_path), "train", on_bad_image="skip")
    assert len(arrays.labels) == 5 and len(arrays.skipped) == 1
    assert arrays.skipped[0][0] == path


def test_invalid_arguments():
    with pytest.raises(UsageError, match="unknown dataset"):
        data.load_arrays("mnist")
    with pytest.raises(UsageError, match="split"):
        data.load_arrays("synthetic", split="val")
    with pytest.raises(UsageError, match="on_bad_image"):
        data.load_arrays("synthetic", on_bad_image="ignore")
    with pytest.raises(DataError, match="needs data_dir"):
        data.load_arrays("gtsrb")


def test_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("FMFP_TF_CACHE", str(tmp_path / "cache"))
    gtsrb_fixture(str(tmp_path / "d"))
    first = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
    assert len(os.listdir(tmp_path / "cache")) == 1
    second = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
    np.testing.assert_array_equal(first.images, second.images)
    path = tmp_path / "d" / "GTSRB" / "Final_Training" / "Images" / "00000" / "00000_00000.ppm"
    Image.new("RGB", (40, 30), (250, 0, 0)).save(str(path), format="PPM")
    third = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
    assert not np.array_equal(first.images, third.images)


def test_a_planted_cache_entry_is_never_served(tmp_path, monkeypatch):
    """Issue 41: a valid .npz planted under an entry's name (every label 3; images of another
    shape) was served unchecked; a FIFO in its place hung the loader."""
    import threading

    monkeypatch.setenv("FMFP_TF_CACHE", str(tmp_path / "cache"))
    gtsrb_fixture(str(tmp_path / "d"))
    honest = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
    (entry,) = (tmp_path / "cache").iterdir()
    names = np.asarray(honest.class_names, dtype=str)
    plants = {
        "every label 3": dict(images=honest.images, labels=np.full(6, 3, np.int32),
                              class_names=names, skipped=np.asarray("[]"),
                              key=np.asarray(entry.name)),
        "another shape": dict(images=np.zeros((6, 8, 8, 1), np.uint8), labels=honest.labels,
                              class_names=names, skipped=np.asarray("[]"),
                              key=np.asarray(entry.name)),
        "another entry's": dict(images=honest.images, labels=honest.labels, class_names=names,
                                skipped=np.asarray("[]"), key=np.asarray("gtsrb-other.npz")),
    }
    for what, arrays in plants.items():
        with open(entry, "wb") as handle:
            np.savez(handle, **arrays)
        again = data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
        np.testing.assert_array_equal(again.labels, honest.labels, err_msg=what)
        np.testing.assert_array_equal(again.images, honest.images, err_msg=what)
    entry.unlink()
    os.mkfifo(entry)
    done = []
    reader = threading.Thread(target=lambda: done.append(
        data.load_arrays("gtsrb", str(tmp_path / "d"), "train")), daemon=True)
    reader.start()
    reader.join(60)
    assert done and np.array_equal(done[0].labels, honest.labels), "the loader hung on a FIFO"


@pytest.mark.real_data
def test_real_gtsrb_counts():
    root = shared_dataset("gtsrb")
    train = data.load_arrays("gtsrb", str(root), "train")
    test = data.load_arrays("gtsrb", str(root), "test")
    assert len(train.labels) == 39209 and len(test.labels) == 12630
    counts = np.bincount(train.labels, minlength=43)
    assert counts[0] == 210 and counts[2] == 2250 and counts[42] == 240
    assert len(np.unique(test.labels)) == 43


@pytest.mark.real_data
def test_real_orl_and_yale_counts():
    orl = shared_dataset("att_faces")
    yale = shared_dataset("yalefaces")
    assert len(data.load_arrays("orl", str(orl), "train").labels) == 280
    assert len(data.load_arrays("orl", str(orl), "test").labels) == 120
    yale_train = data.load_arrays("yale", str(yale), "train")
    yale_test = data.load_arrays("yale", str(yale), "test")
    assert len(yale_train.labels) + len(yale_test.labels) == 165
    assert len(yale_test.labels) == 45 and len(yale_train.class_names) == 15


def test_folder_with_an_empty_class_one_class_or_only_bad_images_is_refused(tmp_path):
    from fmfp_tf.data import load_arrays

    for name in ("a", "b"):
        (tmp_path / "empty" / name).mkdir(parents=True)
    write_ppm(str(tmp_path / "empty" / "a" / "1.ppm"))
    with pytest.raises(DataError, match=r"class folder\(s\) b hold no images"):
        load_arrays("folder", str(tmp_path / "empty"), use_cache=False)
    (tmp_path / "one" / "a").mkdir(parents=True)
    write_ppm(str(tmp_path / "one" / "a" / "1.ppm"))
    with pytest.raises(DataError, match=r"one.*only one class folder \(a\)"):
        load_arrays("folder", str(tmp_path / "one"), use_cache=False)
    for name in ("a", "b"):
        (tmp_path / "bad" / name).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "bad" / name / f"{i}.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"all 8 images of the train split were skipped as bad"):
        load_arrays("folder", str(tmp_path / "bad"), on_bad_image="skip", use_cache=False)


@pytest.mark.parametrize("class_id", [-1, 43, 99])
def test_out_of_range_test_labels_are_one_line_naming_the_image(tmp_path, class_id):
    """Issue 41: the GTSRB test split's ClassId was not range-checked (TensorFlow's
    InvalidArgumentError from train and evaluate)."""
    from fmfp_tf.errors import DataError

    base = gtsrb_fixture(str(tmp_path))
    csv_path = os.path.join(base, "Final_Test", "GT-final_test.csv")
    lines = open(csv_path).read().splitlines()
    lines[2] = lines[2].rsplit(";", 1)[0] + f";{class_id}"
    open(csv_path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"00001.ppm: label {class_id} outside 0..42"):
        data.load_arrays("gtsrb", str(tmp_path), "test", (16, 16))


def test_a_class_folder_or_image_linked_outside_the_data_folder_is_refused(tmp_path):
    """Issue 41: a GTSRB class folder linked to another tree, and a folder dataset's image or
    class folder that is a link, were read, against the README's confinement promise."""
    from fmfp_tf.errors import DataError

    base = gtsrb_fixture(str(tmp_path / "d"))
    outside = gtsrb_fixture(str(tmp_path / "elsewhere"), classes=(7,))
    images = os.path.join(base, "Final_Training", "Images")
    os.symlink(os.path.join(outside, "Final_Training", "Images", "00007"),
               os.path.join(images, "00007"))
    with pytest.raises(DataError, match=r"00007.*leads outside the data folder"):
        data.load_arrays("gtsrb", str(tmp_path / "d"), "train")
    # a folder dataset: an image that is a link out, then a class folder that is one
    root = tmp_path / "folder"
    for label in ("a", "b"):
        for i in range(3):
            write_ppm(str(root / label / f"{i}.png"), value=60 * i)
    write_ppm(str(tmp_path / "secret.png"))
    os.symlink(tmp_path / "secret.png", root / "a" / "3.png")
    with pytest.raises(DataError, match=r"3.png: leads outside the data folder"):
        data.load_arrays("folder", str(root), "train")
    (root / "a" / "3.png").unlink()
    os.symlink(tmp_path / "elsewhere", root / "c")
    write_ppm(str(tmp_path / "elsewhere" / "x.png"))
    with pytest.raises(DataError, match=r"leads outside the data folder"):
        data.load_arrays("folder", str(root), "train")


def _rewrite_test_csv(base, edit):
    csv_path = os.path.join(base, "Final_Test", "GT-final_test.csv")
    lines = open(csv_path, encoding="utf-8").read().splitlines()
    open(csv_path, "w", encoding="utf-8").write("\n".join(edit(lines)) + "\n")


def test_label_files_a_careless_hand_writes_get_the_right_one_line(tmp_path):
    """Issue 41: a CSV with a byte-order mark, an empty Filename, one file listed many times, a
    Filename that is a folder: each gave a message naming another problem, or none."""
    base = gtsrb_fixture(str(tmp_path))
    csv_path = os.path.join(base, "Final_Test", "GT-final_test.csv")
    text = open(csv_path, encoding="utf-8").read()
    open(csv_path, "w", encoding="utf-8-sig").write(text)  # a spreadsheet's BOM: read as is
    assert data.load_arrays("gtsrb", str(tmp_path), "test", (16, 16)).labels.tolist() == [
        0, 5, 42, 0]
    cases = {
        r"GT-final_test.csv:3: empty Filename": lambda lines: lines[:2] + [
            ";1;1;0;0;1;1;5"] + lines[3:],
        r"GT-final_test.csv:4: lists 00000.ppm again \(first on line 2\)": lambda lines: lines[
            :3] + [lines[1]] + lines[4:],
        r"GT-final_test.csv:2: points at a folder": lambda lines: [lines[0], "sub;1;1;0;0;1;1;0"]
        + lines[2:],
    }
    os.makedirs(os.path.join(base, "Final_Test", "Images", "sub"))
    for message, edit in cases.items():
        open(csv_path, "w", encoding="utf-8").write(text)
        _rewrite_test_csv(base, edit)
        with pytest.raises(DataError, match=message):
            data.load_arrays("gtsrb", str(tmp_path), "test", (16, 16))


def test_a_hidden_folder_is_no_class(tmp_path):
    root = tmp_path / "folder"
    for label in ("a", "b", ".b"):
        for i in range(3):
            write_ppm(str(root / label / f"{i}.png"), value=60 * i)
    arrays = data.load_arrays("folder", str(root), "train", (8, 8))
    assert arrays.class_names == ["a", "b"]
