"""Should the real-data loaders sit on TensorFlow Datasets? GTSRB as a TFDS builder with a manual
directory against the toolkit's own loader and array cache, on the same images.

Measured, each in a fresh cache directory:
- first load: ours reads and resizes the files and writes its .npz cache; TFDS's
  `download_and_prepare` reads the same files (with our reader, so only the storage differs),
  encodes each image and writes its versioned record files;
- later loads: ours reads the .npz; TFDS's `as_dataset(batch_size=-1)` reads its records and
  decodes every image into one array, what training and the attacks need.

tensorflow-datasets is a benchmark-only dependency: `pip install tensorflow-datasets`.

    python benchmarks/tfds_vs_cache.py [--split test]
"""
import argparse
import os
import tempfile
import time

import common
import numpy as np

from fmfp_tf import data


def ours(root, split, cache_dir):
    os.environ["FMFP_TF_CACHE"] = cache_dir
    start = time.perf_counter()
    first = data.load_arrays("gtsrb", root, split)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = data.load_arrays("gtsrb", root, split)
    warm = time.perf_counter() - start
    assert np.array_equal(first.images, again.images)
    return first, cold, warm


def tfds_builder(root, split):
    import tensorflow_datasets as tfds

    class GtsrbFmfp(tfds.core.GeneratorBasedBuilder):
        """GTSRB at 32x32 from the official layout in a manual directory."""

        VERSION = tfds.core.Version("1.0.0")
        MANUAL_DOWNLOAD_INSTRUCTIONS = "Place the official GTSRB layout in the manual directory."

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(32, 32, 3)),
                    "label": tfds.features.ClassLabel(num_classes=43)}),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(dl_manager.manual_dir)}

        def _generate_examples(self, manual_dir):
            arrays = data.load_arrays("gtsrb", str(manual_dir), split, use_cache=False)
            for index, (image, label) in enumerate(zip(arrays.images, arrays.labels)):
                yield index, {"image": image, "label": int(label)}

    return tfds, GtsrbFmfp


def theirs(root, split, data_dir):
    tfds, builder_class = tfds_builder(root, split)
    builder = builder_class(data_dir=data_dir)
    start = time.perf_counter()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=root))
    prepare = time.perf_counter() - start
    start = time.perf_counter()
    loaded = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
    load = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(data_dir) for name in names)
    return loaded, prepare, load, size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("train", "test"))
    args = parser.parse_args()
    root = common.shared_data("gtsrb")
    if root is None:
        raise SystemExit("needs ../shared/data/gtsrb")
    with tempfile.TemporaryDirectory() as ours_dir, tempfile.TemporaryDirectory() as tfds_dir:
        arrays, cold, warm = ours(root, args.split, ours_dir)
        ours_size = sum(os.path.getsize(os.path.join(ours_dir, name))
                        for name in os.listdir(ours_dir))
        (images, labels), prepare, load, tfds_size = theirs(root, args.split, tfds_dir)
    same = bool(np.array_equal(np.sort(labels), np.sort(arrays.labels)))
    count = len(arrays.labels)
    lines = [f"GTSRB {args.split} split, {count:,} images at 32x32 (labels identical: {same}).",
             "",
             "| | first load (s) | later loads (s) | on disk (MB) |",
             "| --- | ---: | ---: | ---: |",
             f"| fmfp_tf loader + .npz cache | {cold:.1f} | {warm:.2f} | {ours_size / 1e6:.1f} |",
             f"| TFDS builder (manual dir) | {cold:.1f} + {prepare - cold:.1f} | {load:.2f} | "
             f"{tfds_size / 1e6:.1f} |",
             "",
             f"TFDS later loads / ours: **{load / warm:.1f}x**. (TFDS's first load runs our reader "
             "inside its generator, so it costs ours plus the encoding and writing shown after "
             "the +.)"]
    common.record("TFDS against the toolkit's cache", lines,
                  f"python benchmarks/tfds_vs_cache.py --split {args.split}")


if __name__ == "__main__":
    main()
