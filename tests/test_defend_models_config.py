"""defend(), the model zoo and config validation."""
import os

import keras
import numpy as np

import pytest

from fmfp_tf import FeatureMask, FeaturePadding, defend, models
from fmfp_tf.config import TrainConfig, resolve_train_config
from fmfp_tf.errors import UsageError


def functional():
    inputs = keras.Input((16, 16, 3))
    return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(inputs)))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.flatten = keras.layers.Flatten()
        self.dense = keras.layers.Dense(5)

    def call(self, x):
        return self.dense(self.flatten(x))


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
@pytest.mark.parametrize("defense, layer_class", [("mask", FeatureMask),
                                                  ("padding", FeaturePadding)])
def test_defend_puts_the_layer_first_and_shares_weights(kind, defense, layer_class):
    if kind == "sequential":
        base = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                                 keras.layers.Dense(5)])
        defended = defend(base, defense, size=4, seed=0)
    elif kind == "functional":
        base = functional()
        defended = defend(base, defense, size=4, seed=0)
    else:
        base = Subclassed()
        with pytest.raises(UsageError, match="input_shape"):
            defend(base, defense, size=4)
        defended = defend(base, defense, size=4, seed=0, input_shape=(16, 16, 3))
    assert isinstance(defended.layers[1], layer_class)
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(defended(x).numpy(), base(x).numpy(), rtol=1e-6)
    assert {id(w) for w in base.weights} <= {id(w) for w in defended.weights}
    # training the defended model changes the original's weights
    before = [w.numpy().copy() for w in base.trainable_weights]
    defended.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    defended.fit(x, np.array([0, 1, 2]), epochs=1, verbose=0)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, base.trainable_weights))


def test_defend_rejects_bad_options():
    with pytest.raises(UsageError, match="unknown defense"):
        defend(functional(), "blur", 4)
    with pytest.raises(UsageError, match="smaller than the shorter image side"):
        defend(functional(), "mask", 16)


@pytest.mark.parametrize("name", models.MODELS)
def test_models_build_and_output_logits(name):
    shape = (32, 32, 1) if name in ("facenet", "mtcnn") else (32, 32, 3)
    model = models.build(name, shape, 7)
    out = model(np.random.default_rng(0).random((2,) + shape).astype(np.float32))
    assert out.shape == (2, 7)
    assert not np.allclose(out.numpy().sum(-1), 1.0)  # logits, not probabilities


def test_model_capacities_differ_and_unknown_names_fail():
    counts = {n: models.build(n, (32, 32, 3), 43).count_params() for n in ("dnn1", "dnn2",
                                                                           "dnn3", "dnn4")}
    assert len(set(counts.values())) == 4 and counts["dnn4"] == min(counts.values())
    with pytest.raises(UsageError, match="unknown model"):
        models.build("resnet50", (32, 32, 3), 10)


def test_wide_resnets_have_the_published_sizes():
    # Zagoruyko & Komodakis 2016, CIFAR-10 (10 classes): WRN-16-4 2.7 M, WRN-28-10 36.5 M
    for name, published in (("wrn16_4", 2.75e6), ("wrn28_10", 36.5e6)):
        count = models.build(name, (32, 32, 3), 10).count_params()
        assert abs(count - published) < 0.01 * published, (name, count)


def test_config_validation_names_key_value_and_expectation(tmp_path):
    with pytest.raises(UsageError, match="size"):
        TrainConfig(defense="mask")
    with pytest.raises(UsageError, match="size = '64px'.*smaller than the image side 32"):
        TrainConfig(defense="mask", size="64px")
    # a bare number means pixels to a layer and percent in YAML: a TrainConfig takes neither
    with pytest.raises(UsageError, match="size = 20 has no unit; write '20%'.*or '20px'"):
        TrainConfig(defense="mask", size=20)
    with pytest.raises(UsageError, match="size -1"):
        TrainConfig(defense="mask", size=-1)
    with pytest.raises(UsageError, match="defense 'none' has no FM/FP layer"):
        TrainConfig(defense="none", size="20%")
    with pytest.raises(UsageError, match="epochs"):
        TrainConfig(epochs="ten")
    with pytest.raises(UsageError, match="defense"):
        TrainConfig(defense="magic")
    path = tmp_path / "c.yaml"
    path.write_text("dataset: synthetic\nepochz: 3\n")
    with pytest.raises(UsageError, match="unknown key.*epochz"):
        resolve_train_config(str(path))
    path.write_text("epochs: [1, 2]\n")
    with pytest.raises(UsageError, match="epochs"):
        resolve_train_config(str(path))
    path.write_text("epochs: 3\ndefense: mask\nsize: 8\n")
    config = resolve_train_config(str(path), epochs=5)
    # a bare size in a YAML file is the paper's z: a percent of the image side
    assert config.epochs == 5 and config.size == "8%" and config.layer_defense == "mask"
    assert config.size_pixels == 3 and config.layer_size == 0.08
    path.write_text("defense: padding\nsize: 4px\n")
    assert resolve_train_config(str(path)).size_pixels == 4
    path.write_text("# only a comment\n")
    with pytest.raises(UsageError, match="c.yaml: the config file is empty"):
        resolve_train_config(str(path))
    path.write_text("- not\n- a mapping\n")
    with pytest.raises(UsageError, match="mapping"):
        resolve_train_config(str(path))
    # safe_load would keep the last of two keys, silently
    path.write_text("epochs: 2\ndefense: mask\nepochs: 3\n")
    with pytest.raises(UsageError, match="key 'epochs' is given twice.*line 3"):
        resolve_train_config(str(path))
    path.write_text("defense: mask\nsize: 20\nfill: 5\n")
    with pytest.raises(UsageError, match=r"fill = 5.*pixel range \[0.0, 1.0\]"):
        resolve_train_config(str(path))
    path.write_text("defense: mask\nsize: 20\nfill: 5\nlayer_options: {value_range: [0, 255]}\n")
    assert resolve_train_config(str(path)).fill == 5


def test_config_parts_and_fingerprint():
    config = TrainConfig(defense="padding+pgd-at", size=0.25)
    assert config.layer_defense == "padding" and config.adversarial_training == "pgd"
    assert TrainConfig(defense="cw-at").adversarial_training == "cw"
    assert TrainConfig(seed=1).fingerprint() != TrainConfig(seed=2).fingerprint()
    assert TrainConfig(strategy="mirrored").fingerprint() == TrainConfig().fingerprint()


def test_fingerprint_ignores_only_settings_the_run_never_reads():
    """Configs that train the same model share a cache entry; any setting that is read changes
    the key."""
    plain = TrainConfig()
    for unread in ({"cw_at_fraction": 0.1, "cw_at_iterations": 5}, {"at_eps": 0.1, "at_steps": 3},
                   {"overfit_guard": "warn"}, {"probe_images": 0}):
        assert TrainConfig(**unread).fingerprint() == plain.fingerprint(), unread
    read = [TrainConfig(defense="cw-at", cw_at_fraction=0.1),
            TrainConfig(defense="pgd-at", at_steps=3),
            TrainConfig(defense="pgd-at", overfit_guard="warn"),
            TrainConfig(weight_averaging="ema", ema_decay=0.9),
            TrainConfig(probe_images=64), TrainConfig(epochs=7)]
    defaults = [TrainConfig(defense="cw-at"), TrainConfig(defense="pgd-at"),
                TrainConfig(defense="pgd-at"), TrainConfig(weight_averaging="ema"),
                TrainConfig(), TrainConfig()]
    for config, default in zip(read, defaults):
        assert config.fingerprint() != default.fingerprint(), config
    # pgd-at reads no cw-at budget, cw-at no online-AT budget
    assert (TrainConfig(defense="pgd-at", cw_at_iterations=5).fingerprint()
            == TrainConfig(defense="pgd-at").fingerprint())
    assert (TrainConfig(defense="cw-at", at_eps=0.1).fingerprint()
            == TrainConfig(defense="cw-at").fingerprint())
    # ... unless a robust probe attacks it at at_eps
    assert (TrainConfig(defense="cw-at", probe_images=64, at_eps=0.1).fingerprint()
            != TrainConfig(defense="cw-at", probe_images=64).fingerprint())
    assert (TrainConfig(probe_images=64, at_eps=0.1).fingerprint()  # plain training: 8/255
            == TrainConfig(probe_images=64).fingerprint())


def test_augmentation_joins_the_fingerprint_only_when_on():
    plain = TrainConfig(defense="nfgsm-at")
    assert "augment" not in plain.weight_settings()
    assert TrainConfig(defense="nfgsm-at", augment="none").fingerprint() == plain.fingerprint()
    shifted = TrainConfig(defense="nfgsm-at", augment="shift")
    assert shifted.fingerprint() != plain.fingerprint()
    assert (TrainConfig(defense="nfgsm-at", augment="shift", augment_shift=2).fingerprint()
            != shifted.fingerprint())
    assert "augment_shift" in TrainConfig().unread_settings()
    with pytest.raises(UsageError, match="augment = 'flip' is invalid"):
        TrainConfig(augment="flip")
    with pytest.raises(UsageError, match=r"augment_shift = 2 is invalid; expected the default "
                                         r"\(3\) while augment is none"):
        TrainConfig(augment_shift=2)


def test_fingerprint_reads_the_data_directory_through_links(tmp_path):
    (tmp_path / "gtsrb").mkdir()
    os.symlink(tmp_path / "gtsrb", tmp_path / "link")
    here = TrainConfig(dataset="gtsrb", data_dir=str(tmp_path / "gtsrb"))
    assert here.fingerprint() == TrainConfig(dataset="gtsrb",
                                             data_dir=str(tmp_path / "link")).fingerprint()
    (tmp_path / "other").mkdir()
    assert here.fingerprint() != TrainConfig(dataset="gtsrb",
                                             data_dir=str(tmp_path / "other")).fingerprint()


def test_relative_data_dir_is_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = resolve_train_config(dataset="gtsrb", data_dir="data/gtsrb")
    assert config.data_dir == str(tmp_path / "data" / "gtsrb")


def test_run_config_json_reads_old_bare_sizes_as_pixels_and_names_a_damaged_file(tmp_path):
    import json

    from fmfp_tf.runs import read_config as read_run_config

    # config.json written before sizes carried units held pixels; new ones hold '20%' / '6px'
    (tmp_path / "config.json").write_text(json.dumps({"defense": "mask", "size": 20}))
    assert read_run_config(str(tmp_path)).size == "20px"
    (tmp_path / "config.json").write_text(json.dumps({"defense": "mask", "size": "20%"}))
    assert read_run_config(str(tmp_path)).size_pixels == 6
    (tmp_path / "config.json").write_text('{"defense": "mask", "si')
    with pytest.raises(UsageError, match="config.json: unreadable run config") as raised:
        read_run_config(str(tmp_path))
    # what works from any command (evaluate has no --overwrite of its own)
    assert "train it again with overwrite=True" in str(raised.value)


def test_a_training_budget_reads_as_a_fraction_in_yaml_and_python(tmp_path):
    from fmfp_tf.config import resolve_train_config

    path = tmp_path / "c.yaml"
    path.write_text("defense: pgd-at\nat_eps: 8/255\n")
    assert resolve_train_config(str(path)).at_eps == 8 / 255
    assert TrainConfig(defense="fast-at", at_eps="4/255").at_eps == 4 / 255
    with pytest.raises(UsageError, match="eps '8/0'"):
        TrainConfig(defense="fast-at", at_eps="8/0")


def test_every_training_setting_is_in_exactly_one_group_and_the_twin_resets_the_defense_group():
    from fmfp_tf.config import FINGERPRINT_KEYS, groups

    keys = [key for group in groups().values() for key in group]
    # the keys added since fingerprints began join a fingerprint only when read (augment and
    # probe_holdout also only when not their defaults); trades_beta and mart_beta are read by
    # their methods' runs only
    later = ("augment", "augment_shift", "trades_beta", "mart_beta", "probe_holdout")
    assert sorted(keys) == sorted(TrainConfig.keys()) == sorted(FINGERPRINT_KEYS + later)
    assert len(keys) == len(set(keys))
    config = TrainConfig(defense="mask+pgd-at", size="20%", at_steps=3, epochs=2, seed=5)
    twin = config.undefended_twin()
    assert twin.group("defense") == TrainConfig().group("defense")
    for name in ("data", "model", "optimisation", "runtime"):
        assert twin.group(name) == config.group(name)


def test_a_config_that_is_no_file_is_named_for_what_it_is(tmp_path):
    """Issue 41: a config that is a link loop, a FIFO or /dev/zero was "not found"."""
    import os

    import pytest

    from fmfp_tf.config import read_yaml
    from fmfp_tf.errors import UsageError

    os.symlink(tmp_path / "loop", tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    for path, words in ((tmp_path / "loop", "a link that loops"),
                        (tmp_path / "fifo", "a pipe (FIFO)"), ("/dev/zero", "a device"),
                        (tmp_path / "folder", "a folder"),
                        (tmp_path / "absent", "config file not found")):
        with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
            read_yaml(str(path))


# the fingerprints of the committed configs (data_dir /data/<dataset>), as the flat dataclass
# computed them before TrainConfig was composed of settings groups: run directories and the
# model cache are named by them, so a change here orphans every cached model
CONFIG_FINGERPRINTS = {
    "gtsrb-dnn1-fast-at.yaml": "a35e1a24f880808e",
    "gtsrb-dnn1-mart-at.yaml": "b485b8c8cc3f270f",
    "gtsrb-dnn1-mask20.yaml": "014f07541ab6da67",
    "gtsrb-dnn1-nfgsm-at.yaml": "fd18d9206f443520",
    "gtsrb-dnn1-none.yaml": "895e9fae32a85544",
    "gtsrb-dnn1-padding.yaml": "e293851139e9fc53",
    "gtsrb-dnn1-pgd-at-ema.yaml": "36f624c1570b7b46",
    "gtsrb-dnn1-pgd-at.yaml": "5d7073ab21202693",
    "gtsrb-dnn1-trades-at.yaml": "4a8acf39453b6b71",
    "gtsrb-dnn3-nfgsm-at.yaml": "b80b62fa1c417a7d",
    "gtsrb-wrn16_4-nfgsm-at-30ep.yaml": "aac52759b75006b0",
    "gtsrb-wrn16_4-nfgsm-at.yaml": "76f0234a7b987a6e",
    "orl-facenet.yaml": "b9c9205c3a6cc332",
    "yale-facenet.yaml": "60b331cf58adbd37",
}


def test_the_committed_configs_keep_their_fingerprints():
    import glob
    import os

    from fmfp_tf.config import read_yaml, resolve_train_config

    found = {}
    for path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs",
                                              "*.yaml"))):
        values = read_yaml(path)
        if "dataset" in values:  # table files are not train configs
            config = resolve_train_config(path, data_dir=f"/data/{values['dataset']}")
            found[os.path.basename(path)] = config.fingerprint()
    assert found == CONFIG_FINGERPRINTS
