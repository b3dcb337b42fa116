"""Mixed-precision training: what `auto` picks, and that bfloat16 learns as float32 does while
what is saved stays float32."""
import json

import pytest

from fmfp_tf.config import TrainConfig
from fmfp_tf.training import precision


def test_auto_follows_the_cpu_flags(monkeypatch):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU decides auto")
    expected = "bfloat16" if {"amx_bf16", "avx512_bf16"} & precision.cpu_flags() else "float32"
    assert precision.resolve("auto") == expected
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert precision.resolve("auto") == "float32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert precision.resolve("auto") == "bfloat16"
    assert precision.resolve("float16") == "float16"


def test_the_policy_is_restored_and_float16_scales_the_loss():
    import keras

    before = keras.config.dtype_policy().name
    with precision.policy("bfloat16"):
        layer = keras.layers.Dense(2)
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    adam = keras.optimizers.Adam()
    assert precision.optimizer_for(adam, "bfloat16") is adam
    assert isinstance(precision.optimizer_for(adam, "float16"),
                      keras.optimizers.LossScaleOptimizer)


def test_bfloat16_training_reaches_float32_accuracy_and_saves_a_float32_model(tmp_path):
    import keras

    from fmfp_tf.training import train

    results = {}
    for name in ("float32", "bfloat16"):
        config = TrainConfig(epochs=4, train_limit=2580, test_limit=600, seed=0,
                             defense="mask", size="20%", precision=name)
        metrics = train(config, str(tmp_path / name), verbose=0)
        assert metrics["precision"] == {"requested": name, "used": name}
        results[name] = metrics["test_accuracy"]
        saved = keras.saving.load_model(str(tmp_path / name / "model.keras"))
        policies = {layer.dtype_policy.name for layer in saved._flatten_layers()}
        assert policies == {"float32"}, policies
    # 600 test images: the binomial standard error near 50 % is 2 points; allow 3 of them
    assert results["float32"] > 0.3, results  # both really learned
    assert abs(results["bfloat16"] - results["float32"]) <= 0.06, results
    (tmp_path / "accuracies.json").write_text(json.dumps(results))


def test_schedules_follow_their_curves_and_the_config_refuses_meaningless_combinations():
    from fmfp_tf.errors import UsageError
    from fmfp_tf.training import schedules

    one_cycle = schedules.learning_rate(TrainConfig(epochs=10, schedule="one-cycle",
                                                    learning_rate=0.01), 100)
    rates = [float(one_cycle(step)) for step in range(1000)]
    assert abs(rates[0] - 0.01 / 25) < 1e-6 and max(rates) == pytest.approx(0.01)
    assert rates.index(max(rates)) == pytest.approx(300, abs=2) and rates[-1] < 1e-5
    cosine = schedules.learning_rate(TrainConfig(epochs=10, schedule="cosine", warmup_epochs=1,
                                                 learning_rate=0.1), 100)
    warm = [float(cosine(step)) for step in range(100)]
    assert warm == sorted(warm) and warm[-1] == pytest.approx(0.1)
    assert float(cosine(550)) == pytest.approx(0.05, abs=1e-3) and float(cosine(999)) < 1e-4
    assert schedules.learning_rate(TrainConfig(), 100) == 1e-3  # constant stays a float
    # the names config validation and the CLI accept are exactly the ones with a builder
    from fmfp_tf import config

    assert tuple(schedules.SCHEDULE_BUILDERS) == config.SCHEDULES
    assert tuple(schedules.OPTIMIZER_BUILDERS) == config.OPTIMIZERS
    assert ("auto", *precision.POLICIES) == config.PRECISIONS
    for bad, message in (({"weight_decay": 0.1}, "use adamw or sgd"),
                         ({"warmup_epochs": 1.0}, "0 unless schedule is cosine"),
                         ({"schedule": "cosine", "warmup_epochs": 8.0}, r"\[0, epochs = 8\)")):
        with pytest.raises(UsageError, match=message):
            TrainConfig(**bad)
