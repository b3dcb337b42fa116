"""The datasets `load` knows. Each loader module declares its facts in a `Dataset`; loading,
training, the reproduction runner and the CLI read them here instead of keeping lists of names.

Adding a dataset is one loader module that declares a `Dataset` plus one line in `DATASETS` (or,
from a plugin module, one `register` call). Entries are "module:attribute" until used, so
listing the names imports no loader.

Example:

>>> from fmfp_tf.data import registry
>>> registry.get("orl").color_mode, registry.get("orl").face_crop
('grayscale', 'mtcnn')
"""
import dataclasses
import typing

from fmfp_tf.registry import Registry, passes_registrations_on
from fmfp_tf.settings import Settings, invalid, setting

FACE_CROPS = ("auto", "none", "center", "mtcnn")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What the toolkit needs to know about one dataset.

    Exactly one of `files` and `generate` is given:
    - `files(data_dir, split, split_seed) -> (paths, labels, class_names, root)`: the image files
      of a split in the dataset's layout under `data_dir` (`root`: the folder whose contents key
      the cache);
    - `generate(split, image_size, seed, limit) -> Arrays`: images made without files.
    """

    name: str
    description: str
    files: typing.Optional[typing.Callable] = None
    generate: typing.Optional[typing.Callable] = None
    color_mode: str = "rgb"  # how the files are read: "rgb" or "grayscale"
    convert_modes: bool = False  # accept any image mode and convert it (a user's own folder)
    face_crop: str = "none"  # what face_crop="auto" means: "mtcnn" for face datasets
    # sub-folders of a data root (`reproduce --data-root`) that hold this dataset
    directory_names: typing.Tuple[str, ...] = ()
    # file path -> the group of near-copies it belongs to (GTSRB: its sign track, 30 frames of
    # one sign), so a held-out probe can keep whole groups out of training (`hold_out`)
    group: typing.Optional[typing.Callable] = None

    def __post_init__(self):
        if (self.files is None) == (self.generate is None):
            raise ValueError(f"dataset {self.name!r}: give exactly one of files and generate")
        if self.color_mode not in ("rgb", "grayscale"):
            raise ValueError(f"dataset {self.name!r}: color_mode must be rgb or grayscale")

    @property
    def needs_data_dir(self):
        return self.files is not None


DATASETS = Registry("dataset", {
    "synthetic": "fmfp_tf.data.synthetic:DATASET",
    "gtsrb": "fmfp_tf.data.gtsrb:GTSRB",
    "belgium": "fmfp_tf.data.gtsrb:BELGIUM",
    "orl": "fmfp_tf.data.faces:ORL",
    "yale": "fmfp_tf.data.faces:YALE",
    "folder": "fmfp_tf.data.folder:DATASET",
}, entry_type=Dataset)


def register(dataset, replace=False):
    """Adds a `Dataset`; returns it. A name another module registered is an error unless
    `replace=True` (`Registry.register`)."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"register() needs a fmfp_tf.data.registry.Dataset; got {dataset!r}")
    return DATASETS.register(dataset.name, dataset, replace=replace)


passes_registrations_on(__name__)


def names():
    return DATASETS.names()


def get(name):
    """The `Dataset` registered as `name` (its module imported on first use)."""
    return DATASETS[name]


def _image_size(value):
    """(height, width) from a list or tuple of two sides in 4..1024."""
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(side, int) and not isinstance(side, bool) and 4 <= side <= 1024
                       for side in value)):
        raise ValueError("two sides in 4..1024")
    return tuple(value)


def _square_side(text):
    """The CLI's --image-size N: a square N x N."""
    try:
        side = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None
    return _image_size((side, side))


@dataclasses.dataclass(frozen=True)
class DataSettings(Settings):
    """What a training job reads and how (the `data` group of `config.TrainConfig`)."""

    dataset: str = setting("synthetic", "the dataset", choices=names)
    data_dir: typing.Optional[str] = setting(None, "directory of the dataset in its official "
                                                   "layout")
    image_size: typing.Tuple[int, int] = setting(
        (32, 32), "square image side in pixels, 4..1024", coerce=_image_size,
        expected="two sides in 4..1024", parse=_square_side, metavar="SIDE", shown="32")
    face_crop: str = setting("auto", "auto (mtcnn for face datasets), none, center or mtcnn",
                             choices=FACE_CROPS)
    train_limit: typing.Optional[int] = setting(None, "use a seeded random sample of N training "
                                                      "images", minimum=1)
    test_limit: typing.Optional[int] = setting(None, "use a seeded random sample of N test "
                                                     "images", minimum=1)
    on_bad_image: str = setting("fail", "what to do with corrupt or wrong-mode image files",
                                choices=("fail", "skip"))

    def __post_init__(self):
        super().__post_init__()
        needs_data_dir = get(self.dataset).needs_data_dir
        if self.data_dir is None and needs_data_dir:
            raise invalid("data_dir", None, f"a directory for dataset {self.dataset!r}")
        if self.data_dir is not None and not needs_data_dir:
            raise invalid("data_dir", self.data_dir, f"none: the {self.dataset} dataset is "
                          "drawn from the seed and reads no files (set dataset=NAME too)")


def face_crop_for(dataset, face_crop="auto"):
    """The crop actually applied: 'auto' resolves to the dataset's own default."""
    return get(dataset).face_crop if face_crop == "auto" else face_crop
