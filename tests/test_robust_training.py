"""The robust-training recipe's parts: fast adversarial training, weight averaging, and the robust
probe with its catastrophic-overfitting guard."""
import numpy as np
import pytest
import tensorflow as tf

from fmfp_tf.config import TrainConfig
from fmfp_tf.training import robustness_probe


@pytest.mark.parametrize("defense, method, reach, median_above", [
    # fast-AT: a 1.25 eps step from a random start, projected to the eps-ball, reaching its surface
    ("fast-at", "fast", 1, 4 / 255),
    # N-FGSM: noise up to 2 eps plus a step of eps, never projected back to the eps-ball
    ("nfgsm-at", "nfgsm", 3, 8 / 255 + 1e-3)])
def test_single_step_examples_keep_their_reach_and_move(trained_model, defense, method, reach,
                                                         median_above):
    from fmfp_tf.training.adversarial import perturbation

    model, x, y = trained_model
    attack = perturbation(TrainConfig(defense=defense, at_eps=8 / 255, seed=1), model)
    assert attack.method == method and attack.clean_weight == 0.0
    x_adv = attack(tf.constant(x[:64]), tf.constant(y[:64])).numpy()
    distance = np.abs(x_adv - x[:64]).reshape(64, -1).max(axis=1)
    assert distance.max() <= reach * 8 / 255 + 1e-6
    assert np.median(distance) > median_above
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # a fresh random start each call
    assert not np.array_equal(x_adv, attack(tf.constant(x[:64]), tf.constant(y[:64])).numpy())


def test_trades_crafts_within_the_ball_and_trains_on_its_own_objective(trained_model, tmp_path):
    """trades-at: the crafted examples stay in the eps-ball and move; the perturbation carries
    TRADES's loss (clean cross-entropy + beta KL), which the loop trains on; beta and the clean
    weight join the fingerprint only where read."""
    from fmfp_tf.training import train, trades
    from fmfp_tf.training.adversarial import perturbation

    model, x, y = trained_model
    config = TrainConfig(defense="trades-at", at_eps=8 / 255, at_steps=3, trades_beta=2.0)
    attack = perturbation(config, model)
    x_adv = attack(tf.constant(x[:64]), tf.constant(y[:64])).numpy()
    distance = np.abs(x_adv - x[:64]).reshape(64, -1).max(axis=1)
    assert distance.max() <= 8 / 255 + 1e-6 and np.median(distance) > 4 / 255
    clean, adversarial = model(x[:8], training=False), model(x_adv[:8], training=False)
    np.testing.assert_allclose(attack.loss(y[:8], clean, adversarial).numpy(),
                               trades.loss(y[:8], clean, adversarial, 2.0).numpy(), rtol=1e-6)
    assert "at_clean_fraction" in config.unread_settings()
    assert "trades_beta" not in config.unread_settings()
    assert "trades_beta" in TrainConfig(defense="pgd-at").unread_settings()
    assert config.replace(trades_beta=3.0).fingerprint() != config.fingerprint()
    from fmfp_tf.errors import UsageError

    with pytest.raises(UsageError, match="at_clean_fraction = 0.3 is invalid"):
        config.replace(at_clean_fraction=0.3)  # from a config file too, not only a flag
    assert (TrainConfig(defense="pgd-at").fingerprint()
            == TrainConfig(defense="pgd-at", trades_beta=3.0).fingerprint())
    # what each method reads: steps only the stepped ones, a step size all but fgsm
    for defense, unread in (("fgsm-at", {"at_steps", "at_step_size"}), ("fast-at", {"at_steps"}),
                            ("nfgsm-at", {"at_steps"}), ("pgd-at", set())):
        keys = {"at_steps", "at_step_size"} & set(TrainConfig(defense=defense).unread_settings())
        assert keys == unread, defense
        assert (TrainConfig(defense=defense).fingerprint() ==
                TrainConfig(defense=defense, at_steps=7).fingerprint())
    with pytest.raises(UsageError, match="at_steps = 3 is invalid.*'nfgsm-at' does not read"):
        TrainConfig(defense="nfgsm-at", at_steps=3)
    metrics = train(config.replace(epochs=1, train_limit=300, test_limit=100, probe_images=0),
                    str(tmp_path / "run"), verbose=0)
    assert np.isfinite(metrics["history"][0]["loss"]) and metrics["history"][0]["loss"] > 0


def test_mart_crafts_pgd_examples_and_trains_on_its_own_objective(trained_model, tmp_path):
    """mart-at: PGD examples inside the eps-ball that raise the cross-entropy; the perturbation
    carries MART's loss with mart_beta, which only mart-at runs read."""
    from fmfp_tf.training import mart, train
    from fmfp_tf.training.adversarial import perturbation

    model, x, y = trained_model
    config = TrainConfig(defense="mart-at", at_eps=8 / 255, at_steps=3, mart_beta=2.0)
    attack = perturbation(config, model)
    x_adv = attack(tf.constant(x[:64]), tf.constant(y[:64])).numpy()
    distance = np.abs(x_adv - x[:64]).reshape(64, -1).max(axis=1)
    assert distance.max() <= 8 / 255 + 1e-6 and np.median(distance) > 4 / 255
    clean, adversarial = model(x[:64], training=False), model(x_adv, training=False)
    loss = tf.keras.losses.sparse_categorical_crossentropy
    assert (loss(y[:64], adversarial, from_logits=True).numpy()
            > loss(y[:64], clean, from_logits=True).numpy()).mean() >= 0.9
    np.testing.assert_allclose(attack.loss(y[:8], clean[:8], adversarial[:8]).numpy(),
                               mart.loss(y[:8], clean[:8], adversarial[:8], 2.0).numpy(),
                               rtol=1e-6)
    assert {"at_clean_fraction", "trades_beta"} <= set(config.unread_settings())
    assert "mart_beta" in TrainConfig(defense="trades-at").unread_settings()
    assert config.replace(mart_beta=3.0).fingerprint() != config.fingerprint()
    assert (TrainConfig(defense="pgd-at").fingerprint()
            == TrainConfig(defense="pgd-at", mart_beta=3.0).fingerprint())
    metrics = train(config.replace(epochs=1, train_limit=300, test_limit=100, probe_images=0),
                    str(tmp_path / "run"), verbose=0)
    assert np.isfinite(metrics["history"][0]["loss"]) and metrics["history"][0]["loss"] > 0


def test_fast_at_takes_its_step_size_as_the_fit_route_does(trained_model):
    """fast-at's step is 1.25 eps unless at_step_size sets it (it was read by the fit route
    and ignored by this loop before): same seed, same starts, another step, other examples."""
    from fmfp_tf.training.adversarial import perturbation

    model, x, y = trained_model
    x, y = tf.constant(x[:64]), tf.constant(y[:64])

    def examples(**settings):
        return perturbation(TrainConfig(defense="fast-at", seed=1, **settings), model)(x, y)

    np.testing.assert_array_equal(examples(), examples(at_step_size=1.25 * 8 / 255))
    assert not np.array_equal(examples(), examples(at_step_size=1 / 255))


def _history(pgd, fgsm):
    return [{"epoch": i + 1, "probe_pgd_accuracy": p, "probe_fgsm_accuracy": f}
            for i, (p, f) in enumerate(zip(pgd, fgsm))]


def test_the_guard_flags_a_collapse_and_not_an_ordinary_dip():
    # Wong et al.'s signature: PGD accuracy collapses while FGSM accuracy jumps
    collapse = _history([0.20, 0.31, 0.38, 0.02, 0.01], [0.35, 0.45, 0.50, 0.85, 0.90])
    assert robustness_probe.collapsed_epochs(collapse) == [4, 5]
    assert robustness_probe.best_epoch(collapse) == 3
    dip = _history([0.20, 0.31, 0.38, 0.33, 0.36], [0.35, 0.45, 0.50, 0.47, 0.52])
    assert robustness_probe.collapsed_epochs(dip) == []
    # PGD and FGSM falling together is underfitting or a bad learning rate, not this failure
    both = _history([0.30, 0.40, 0.10], [0.50, 0.60, 0.20])
    assert robustness_probe.collapsed_epochs(both) == []


def test_a_collapse_restores_the_best_epoch_when_asked(tmp_path):
    probe = robustness_probe.RobustProbe(np.zeros((2, 4, 4, 3), np.float32), np.zeros(2, int),
                                         8 / 255, str(tmp_path))
    (tmp_path / robustness_probe.BEST_WEIGHTS).write_bytes(b"weights")
    collapse = _history([0.20, 0.38, 0.02], [0.35, 0.50, 0.85])
    chosen = probe.selection(collapse, restore=True)
    assert chosen["restored"] and chosen["best_epoch"] == 2 and chosen["collapsed_epochs"] == [3]
    assert not probe.selection(collapse, restore=False)["restored"]
    assert not probe.selection(_history([0.2, 0.3], [0.3, 0.4]), restore=True)["restored"]


@pytest.mark.extended
def test_ema_saves_the_average_keeps_the_raw_model_and_checkpoints_the_average(tmp_path):
    import json

    import keras

    from fmfp_tf.training import train

    config = TrainConfig(epochs=2, train_limit=1290, test_limit=200, weight_averaging="ema",
                         ema_decay=0.99, defense="pgd-at", at_steps=2, probe_images=128)
    metrics = train(config, str(tmp_path / "run"), verbose=0)
    averaged = keras.saving.load_model(str(tmp_path / "run" / "model.keras"))
    raw = keras.saving.load_model(str(tmp_path / "run" / "model-raw.keras"))
    differ = [not np.allclose(a, b) for a, b in zip(averaged.get_weights(), raw.get_weights())]
    assert sum(differ) >= len(differ) // 2, "the average should differ from the last iterate"
    assert metrics["weight_averaging"]["decay"] == 0.99
    record = metrics["history"][-1]
    assert {"test_accuracy_raw", "probe_fgsm_accuracy", "probe_pgd_accuracy"} <= set(record)
    assert metrics["robust_selection"]["probe_images"] == 128
    # the saved model is the one metrics.json reports
    from fmfp_tf import data

    test = data.load_arrays("synthetic", split="test", limit=200)
    predicted = averaged.predict(test.images.astype("float32") / 255, verbose=0).argmax(-1)
    assert np.mean(predicted == test.labels) == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    # the checkpoint holds the average and its update count, so a resume continues it
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    names = {name for name, _ in tf.train.list_variables(latest)}
    assert any(name.startswith("average/") for name in names)
    updates = tf.train.load_variable(latest, "average_updates/.ATTRIBUTES/VARIABLE_VALUE")
    assert updates == 2 * np.ceil((1290 - 128) / 32)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["weight_averaging"] == "ema"


def test_a_training_run_leaves_the_process_determinism_as_it_found_it():
    # TensorFlow's deterministic ops are on for a run only, not for the rest of the process
    from tensorflow.python.framework import config as tf_config

    from fmfp_tf.training.run import deterministic

    before = tf_config.is_op_determinism_enabled()
    with deterministic(3):
        assert tf_config.is_op_determinism_enabled()
    assert tf_config.is_op_determinism_enabled() == before


def test_shift_moves_each_image_by_its_own_offset_within_reach_and_resumes_its_draws(tmp_path):
    from fmfp_tf.training import augmentation

    config = TrainConfig(augment="shift", augment_shift=2, seed=3)
    shift = augmentation.build(config)
    x = tf.reshape(tf.range(16 * 8 * 8 * 2, dtype=tf.float32), (16, 8, 8, 2))
    padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT").numpy()
    checkpoint = tf.train.Checkpoint(rng=shift.generator)
    saved = checkpoint.write(str(tmp_path / "rng"))
    out = shift(x).numpy()
    moves = []
    for image, pad in zip(out, padded):
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if np.array_equal(image, pad[dy:dy + 8, dx:dx + 8])]
        assert len(found) == 1, "every image is one crop of its reflected padding"
        moves.append(found[0])
    assert len(set(moves)) > 3, "each image draws its own offset"
    assert np.array_equal(augmentation.shifted(x, tf.fill((16, 2), 2), 2).numpy(), x.numpy())
    checkpoint.read(saved)
    assert np.array_equal(shift(x).numpy(), out), "a restored generator draws the same offsets"
    assert augmentation.build(TrainConfig()) is None


def test_a_run_with_shift_checkpoints_its_draws(tmp_path):
    from fmfp_tf.training import train

    config = TrainConfig(epochs=1, train_limit=300, test_limit=100, defense="nfgsm-at",
                         augment="shift", probe_images=0)
    metrics = train(config, str(tmp_path / "run"), verbose=0)
    assert 0 <= metrics["test_accuracy"] <= 1
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert any(name.startswith("augment_rng/") for name, _ in tf.train.list_variables(latest))
