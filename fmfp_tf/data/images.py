"""Reading image files into uint8 arrays, with a clear error (or a counted skip) for bad files."""
import dataclasses
import os
import typing

import numpy as np

from fmfp_tf import atomic
from fmfp_tf.errors import DataError, UsageError

ON_BAD_IMAGE = ("fail", "skip")
CHANNELS = {"rgb": 3, "grayscale": 1}


@dataclasses.dataclass
class Arrays:
    """A dataset split held in memory: uint8 images (N, H, W, C), int32 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)  # [(path, reason), ...]
    # the near-copy group of each image (the dataset's `group`), or None where it has none
    groups: typing.Optional[np.ndarray] = None

    def __post_init__(self):
        if len(self.images) != len(self.labels):
            raise DataError(
                f"{len(self.images)} images but {len(self.labels)} labels; expected equal counts"
            )
        if self.groups is not None and len(self.groups) != len(self.labels):
            raise DataError(f"{len(self.groups)} groups but {len(self.labels)} labels; expected "
                            "equal counts")


def check_data_dir(data_dir, needs):
    """`data_dir` must be an existing directory; `needs` is the error when none was given."""
    if data_dir is None:
        raise DataError(needs)
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: " + ("is a file; expected the dataset's directory"
                                           if os.path.exists(data_dir)
                                           else "data directory not found"))


def check_on_bad_image(value):
    if value not in ON_BAD_IMAGE:
        raise UsageError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}; got {value!r}")
    return value


def _accepted_modes(color_mode, convert):
    if convert:
        return None
    # palette ("P") images are accepted for grey data: GIF stores grey faces as a grey palette
    return {"rgb": {"RGB"}, "grayscale": {"L", "P", "I;16"}}[color_mode]


def read_image(path, image_size, color_mode="rgb", convert=False, transform=None):
    """One image file as uint8 (H, W, C); raises DataError naming the file and the problem.

    `transform`, if given, maps the decoded PIL image (e.g. to a face crop) before resizing.
    """
    from PIL import Image, UnidentifiedImageError

    atomic.check_regular_file(path, "image")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: zero-byte image file")
    try:
        with Image.open(path) as image:
            accepted = _accepted_modes(color_mode, convert)
            if accepted is not None and image.mode not in accepted:
                raise DataError(
                    f"{path}: image mode {image.mode} where {color_mode.upper()} "
                    f"({'/'.join(sorted(accepted))}) is expected"
                )
            image.load()
            image = image.convert("RGB" if color_mode == "rgb" else "L")
            if transform is not None:
                image = transform(image)
            height, width = image_size
            if image.size != (width, height):
                image = image.resize((width, height), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except DataError:
        raise
    except Image.DecompressionBombError as error:
        # a bad image like any other (skippable), naming Pillow's limit
        raise DataError(f"{path}: image too large to decode safely ({error}; the limit is "
                        f"Pillow's Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS} pixels)"
                        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: corrupt or truncated image ({error})") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def read_images(paths, labels, image_size, color_mode="rgb", on_bad_image="fail",
                convert=False, transform=None, progress=None):
    """Reads many files; with on_bad_image='skip' drops bad ones and lists them in `skipped`."""
    check_on_bad_image(on_bad_image)
    height, width = image_size
    images = np.empty((len(paths), height, width, CHANNELS[color_mode]), np.uint8)
    keep = np.ones(len(paths), bool)
    skipped = []
    for index, path in enumerate(paths):
        try:
            images[index] = read_image(path, image_size, color_mode, convert, transform)
        except DataError as error:
            if on_bad_image == "fail":
                raise
            keep[index] = False
            skipped.append((str(path), str(error)))
        if progress is not None:
            progress(index + 1, len(paths))
    return images[keep], np.asarray(labels, np.int32)[keep], skipped
