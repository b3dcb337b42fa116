"""Installs fmfp-tf: the library `fmfp_tf` and its click CLI `fmfp-tf`.

The click app lives in the top-level folder `cli/` and is installed as `fmfp_tf.cli`, so no bare
top-level module named `cli` lands in site-packages.
"""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
TENSORFLOW = [
    "tensorflow>=2.16,<2.22",  # Keras 3 era; 2.16 is the first release with Keras 3 as tf.keras
    "tensorboard>=2.16",  # tf.summary needs it; TensorFlow 2.21 no longer pulls it in
    "mtcnn==1.0.0",  # ships its P/R/O-Net weights inside the wheel: works offline
]
VERSION = re.search(
    r'^__version__ = "([^"]+)"', (HERE / "fmfp_tf" / "version.py").read_text(), re.M
).group(1)

setup(
    name="fmfp-tf",
    version=VERSION,
    description=(
        "Feature mask and feature padding: training-time defenses against adversarial examples "
        "for TensorFlow/Keras image classifiers, with an honest robustness evaluation."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fmfp_tf", "fmfp_tf.*"]) + ["fmfp_tf.cli", "fmfp_tf.configs"],
    # the top-level folders cli/ and configs/ install inside the fmfp_tf namespace
    package_dir={"fmfp_tf.cli": "cli", "fmfp_tf.configs": "configs"},
    # the console script's quiet start and its group's declaration: outside the package, so
    # they run before `import fmfp_tf` (`fmfp-tf --help` needs no Keras)
    py_modules=["fmfp_tf_cli_start", "fmfp_tf_cli_group"],
    package_data={"fmfp_tf": ["py.typed"], "fmfp_tf.configs": ["*.yaml"],
                  "fmfp_tf.reproduction": ["paper_tables.csv"]},
    # the library, the layers, the attacks and `fmfp-tf evaluate` run on any Keras backend: the
    # backend itself comes from an extra (README: `.[tensorflow]`, `.[jax]`, `.[torch]`)
    install_requires=[
        # the layers build on Keras's image preprocessing base (3.8+); tested up to 3.15
        "keras>=3.8,<3.16",
        "numpy>=1.26",
        "click>=8.1",
        "pyyaml>=6.0",
        "matplotlib>=3.7",
        "pillow>=10.0",
    ],
    extras_require={
        # training, export and face extraction are TensorFlow's (tf.distribute, SavedModel, MTCNN)
        "tensorflow": TENSORFLOW,
        "jax": ["jax[cpu]>=0.4.30"],  # a CUDA machine: pip install "jax[cuda12]" beside it
        "torch": ["torch>=2.1"],
        # the default suite runs on TensorFlow, its backend tests on JAX beside it;
        # CleverHans 4.0.0: the reference the tests check FGSM, I-FGSM and C&W against
        # (docs/architecture.md, "CleverHans"); tests/cleverhans_compat.py fixes it for Keras 3
        "test": TENSORFLOW + ["pytest>=7.4", "hypothesis>=6.90", "jax[cpu]>=0.4.30",
                              "cleverhans==4.0.0"],
    },
    entry_points={"console_scripts": ["fmfp-tf=fmfp_tf_cli_start:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
