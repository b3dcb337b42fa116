"""GTSRB and BelgiumTSC in their official layouts (per-class folders with `GT-*.csv` files).

GTSRB (Stallkamp et al. 2012): `GTSRB/Final_Training/Images/000NN/*.ppm` with `GT-000NN.csv`,
`GTSRB/Final_Test/Images/*.ppm` with the ground truth `GT-final_test.csv` (shipped separately
officially, in `GTSRB_Final_Test_GT.zip`). BelgiumTSC (Timofte et al. 2014) uses the same CSV
columns in `Training/000NN/` and `Testing/000NN/`. CSVs are `;`-separated with a `Filename` and a
`ClassId` column; the image size is read from the image file, never from the CSV.
"""
import csv
import os

from fmfp_tf.data.images import check_data_dir
from fmfp_tf.data.registry import Dataset
from fmfp_tf.errors import DataError

GTSRB_CLASS_NAMES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)",
    "Speed limit (60km/h)", "Speed limit (70km/h)", "Speed limit (80km/h)",
    "End of speed limit (80km/h)", "Speed limit (100km/h)", "Speed limit (120km/h)",
    "No passing", "No passing for vehicles over 3.5 t", "Right-of-way at the next intersection",
    "Priority road", "Yield", "Stop", "No vehicles", "Vehicles over 3.5 t prohibited",
    "No entry", "General caution", "Dangerous curve to the left",
    "Dangerous curve to the right", "Double curve", "Bumpy road", "Slippery road",
    "Road narrows on the right", "Road work", "Traffic signals", "Pedestrians",
    "Children crossing", "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing",
    "End of all speed and passing limits", "Turn right ahead", "Turn left ahead", "Ahead only",
    "Go straight or right", "Go straight or left", "Keep right", "Keep left",
    "Roundabout mandatory", "End of no passing", "End of no passing by vehicles over 3.5 t",
]
BELGIUM_NUM_CLASSES = 62
GTSRB_TEST_GT_CANDIDATES = (
    ("Final_Test", "GT-final_test.csv"),
    ("Final_Test", "Images", "GT-final_test.csv"),
    ("GT-final_test.csv",),
    ("..", "GT-final_test.csv"),
)


def read_csv(csv_path, folder):
    """(file paths, class ids) of one GT csv; file paths are resolved against `folder`."""
    try:
        # utf-8-sig: a CSV saved by a spreadsheet starts with a byte-order mark
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle, delimiter=";"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{csv_path}: cannot read label file ({error})") from None
    if not rows or "Filename" not in rows[0] or "ClassId" not in rows[0]:
        raise DataError(
            f"{csv_path}: expected a ';'-separated CSV with columns Filename and ClassId"
        )
    paths, labels, listed = [], [], {}
    inside = os.path.join(os.path.realpath(folder), "")
    for line, row in enumerate(rows, start=2):
        name = (row["Filename"] or "").strip()
        if not name:
            raise DataError(f"{csv_path}:{line}: empty Filename")
        if name in listed:  # one image counted many times would weigh its class wrongly
            raise DataError(f"{csv_path}:{line}: lists {name} again (first on line "
                            f"{listed[name]})")
        listed[name] = line
        path = os.path.join(folder, name)
        # an index names files of its own folder: an absolute path, '..' or a link out is refused
        if not os.path.realpath(path).startswith(inside):
            raise DataError(f"{csv_path}:{line}: Filename {row['Filename']!r} lies outside the "
                            f"data folder {folder}; the loader reads only files inside it")
        if not os.path.isfile(path):
            what = "a folder" if os.path.isdir(path) else (
                "not a regular file" if os.path.exists(path) else "a missing file")
            raise DataError(f"{csv_path}:{line}: points at {what} {path}")
        try:
            labels.append(int(row["ClassId"]))
        except (TypeError, ValueError):
            raise DataError(
                f"{csv_path}:{line}: ClassId {row['ClassId']!r} is not an integer"
            ) from None
        paths.append(path)
    return paths, labels


def gtsrb_root(data_dir):
    """`data_dir` may be the folder holding `GTSRB/` or `GTSRB/` itself."""
    check_data_dir(data_dir,
                   "gtsrb needs data_dir: the folder that holds GTSRB/ (or GTSRB/ itself)")
    for candidate in (os.path.join(data_dir, "GTSRB"), data_dir):
        if os.path.isdir(os.path.join(candidate, "Final_Training")) or os.path.isdir(
            os.path.join(candidate, "Final_Test")
        ):
            return candidate
    raise DataError(
        f"{data_dir}: not the GTSRB layout; expected GTSRB/Final_Training/Images/000NN/ "
        "and GTSRB/Final_Test/Images/ inside it"
    )


def _class_folders(images_dir, num_classes, dataset):
    if not os.path.isdir(images_dir):
        raise DataError(f"{images_dir}: missing; expected the {dataset} per-class folders here")
    folders = sorted(
        name for name in os.listdir(images_dir)
        if os.path.isdir(os.path.join(images_dir, name)) and name.isdigit()
    )
    if not folders:
        raise DataError(f"{images_dir}: no class folders (000NN) found for {dataset}")
    for name in folders:
        if int(name) >= num_classes:
            raise DataError(
                f"{images_dir}/{name}: class {int(name)} out of range for {dataset} "
                f"({num_classes} classes)"
            )
    return folders


def per_class_folders(images_dir, num_classes, dataset):
    """Files and labels from `000NN/GT-000NN.csv` in each class folder."""
    paths, labels = [], []
    for name in _class_folders(images_dir, num_classes, dataset):
        folder = os.path.join(images_dir, name)
        csv_path = os.path.join(folder, f"GT-{name}.csv")
        if not os.path.isfile(csv_path):
            raise DataError(f"{csv_path}: label file missing")
        folder_paths, folder_labels = read_csv(csv_path, folder)
        paths += folder_paths
        labels += folder_labels
    if not paths:
        raise DataError(f"{images_dir}: the label files list no images")
    for path, label in zip(paths, labels):
        if not 0 <= label < num_classes:
            raise DataError(f"{path}: ClassId {label} outside 0..{num_classes - 1}")
    return paths, labels


def gtsrb_files(data_dir, split):
    root = gtsrb_root(data_dir)
    if split == "train":
        return per_class_folders(
            os.path.join(root, "Final_Training", "Images"), len(GTSRB_CLASS_NAMES), "GTSRB"
        ), root
    images_dir = os.path.join(root, "Final_Test", "Images")
    if not os.path.isdir(images_dir):
        raise DataError(f"{images_dir}: missing; expected the GTSRB test images here")
    tried = [os.path.join(root, *parts) for parts in GTSRB_TEST_GT_CANDIDATES]
    for csv_path in tried:
        if os.path.isfile(csv_path):
            return read_csv(csv_path, images_dir), root
    raise DataError(
        "GTSRB test ground truth GT-final_test.csv (with ClassId) not found; looked at "
        + ", ".join(tried)
    )


def belgium_files(data_dir, split):
    check_data_dir(data_dir, "belgium needs data_dir: the folder holding Training/ and Testing/")
    folder = {"train": "Training", "test": "Testing"}[split]
    images_dir = os.path.join(data_dir, folder)
    if not os.path.isdir(images_dir):
        nested = os.path.join(data_dir, "BelgiumTSC", folder)
        if os.path.isdir(nested):
            images_dir = nested
        else:
            raise DataError(
                f"{data_dir}: not the BelgiumTSC layout; expected {folder}/000NN/GT-000NN.csv"
            )
    return per_class_folders(images_dir, BELGIUM_NUM_CLASSES, "BelgiumTSC"), data_dir


def belgium_class_names():
    return [f"{index:05d}" for index in range(BELGIUM_NUM_CLASSES)]


def _gtsrb_split(data_dir, split, split_seed):
    (paths, labels), root = gtsrb_files(data_dir, split)  # official split: no seed
    return paths, labels, GTSRB_CLASS_NAMES, root


def _belgium_split(data_dir, split, split_seed):
    (paths, labels), root = belgium_files(data_dir, split)
    return paths, labels, belgium_class_names(), root


def sign_track(path):
    """The physical sign a file shows: class folder and track number (`000NN/TTTTT_FFFFF.ppm`,
    the frames of one track are near-copies); a file named otherwise is its own group."""
    name = os.path.basename(path)
    track = name.split("_")[0] if "_" in name else name
    return f"{os.path.basename(os.path.dirname(path))}/{track}"


GTSRB = Dataset("gtsrb", "German Traffic Sign Recognition Benchmark, official layout (43 classes)",
                files=_gtsrb_split, directory_names=("gtsrb", "GTSRB"), group=sign_track)
BELGIUM = Dataset("belgium", "BelgiumTSC, official layout (62 classes)", files=_belgium_split,
                  directory_names=("belgium", "BelgiumTSC", "belgiumtsc"), group=sign_track)
