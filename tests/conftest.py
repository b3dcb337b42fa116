import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("FMFP_TF_SHARED", REPO.parent / "shared")) / "data"


def shared_dataset(name):
    """Path of a real dataset in ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is absent")
    return path


@pytest.fixture(scope="session")
def tiny_synthetic():
    """A small synthetic train/test pair shared by the tests that need a trained model."""
    from fmfp_tf import data

    train = data.load_arrays("synthetic", split="train", limit=1720)
    test = data.load_arrays("synthetic", split="test", limit=430)
    return train, test


@pytest.fixture(scope="session")
def trained_model(tiny_synthetic, tmp_path_factory):
    """A dnn1 trained for a few epochs on synthetic data (undefended), with its test arrays."""
    import keras
    import tensorflow as tf

    from fmfp_tf import models
    from fmfp_tf.training.loop import fit

    train, test = tiny_synthetic
    keras.utils.set_random_seed(0)
    model = models.build("dnn1", train.images.shape[1:], 43)
    optimizer = keras.optimizers.Adam(2e-3)
    fit(model, optimizer, tf.distribute.get_strategy(), train, None, epochs=8, batch_size=32,
        seed=0, checkpoint_dir=str(tmp_path_factory.mktemp("ckpt")), verbose=0)
    x = train.images[:200].astype("float32") / 255.0
    y = train.labels[:200]
    return model, x, y
