"""Settings declared once (fmfp_tf.settings) and the attack settings derived from them."""
import dataclasses
import typing

import pytest

from fmfp_tf import settings
from fmfp_tf.errors import UsageError
from fmfp_tf.evaluation import attack_specs


@dataclasses.dataclass(frozen=True)
class Toy(settings.Settings):
    prefix: typing.ClassVar[str] = "toy"
    steps: int = settings.setting(10, "iterations", minimum=1)
    rate: float = settings.setting(0.5, "a rate", above=0.0, maximum=1.0)
    mode: str = settings.setting("a", "a mode", choices=("a", "b"), flag="--toy-kind")


def test_a_settings_class_checks_its_fields_and_names_them():
    assert Toy().steps == 10 and settings.key(Toy, "rate") == "toy_rate"
    assert settings.flag(Toy, "steps") == "--toy-steps" and settings.flag(Toy, "mode") == "--toy-kind"
    for bad, message in (({"steps": 0}, "toy_steps = 0 is invalid; expected an integer >= 1"),
                         ({"steps": 2.5}, "toy_steps"), ({"steps": True}, "toy_steps"),
                         ({"rate": 0.0}, r"toy_rate = 0.0 is invalid; expected a finite number in \(0.0, 1.0\]"),
                         ({"rate": float("nan")}, "toy_rate"), ({"rate": 2.0}, "toy_rate"),
                         ({"mode": "c"}, "toy_mode = 'c' is invalid; expected one of a, b")):
        with pytest.raises(UsageError, match=message):
            Toy(**bad)
    with pytest.raises(UsageError, match="--toy-steps = 0"):
        settings.build(Toy, {"steps": 0}, spell=settings.flag)
    assert settings.build(Toy, {"rate": 1}).rate == 1.0 and isinstance(
        settings.build(Toy, {"rate": 1}).rate, float)


def test_attack_settings_hold_every_registered_group_under_flat_keys():
    values = attack_specs.AttackSettings(pgd_steps=3, autoattack_queries=40, batch_size=8)
    assert values.pgd.steps == 3 and values.pgd_steps == 3 and values.batch_size == 8
    assert values.autoattack.queries == 40 and values.square.queries == 5000
    assert {"pgd_steps", "apgd_target_classes", "fab_steps", "autoattack_steps", "cw_iterations",
            "eot_samples", "seed"} <= set(attack_specs.AttackSettings.keys())
    with pytest.raises(UsageError, match="unknown attack setting.*pgd_stepz"):
        attack_specs.AttackSettings(pgd_stepz=3)
    with pytest.raises(UsageError, match="apgd_steps = 0"):
        attack_specs.AttackSettings(apgd_steps=0)
    # each attack's arguments come from its own group: AutoAttack's budget is not APGD's
    spec = attack_specs.get("autoattack")
    assert spec.params(attack_specs.AttackSettings(apgd_steps=7), 8 / 255)["steps"] == 100
    assert spec.params(attack_specs.AttackSettings(autoattack_steps=7), 8 / 255)["steps"] == 7
    assert attack_specs.readers(attack_specs.get("pgd").setting_groups()[0]) == (
        "pgd", "pgd-unbounded")


def test_every_attack_declares_the_settings_it_reads():
    # an attack reading a group it does not declare would get no option for it: check that the
    # arguments of every spec come out of its declared groups (others left at odd values)
    for name, spec in attack_specs.ATTACKS.items():
        declared = set(spec.setting_groups())
        odd = {}
        for cls in attack_specs.setting_groups()[1:]:
            if cls not in declared:
                for field in settings.fields(cls):
                    if field.type is int and field.metadata["choices"] is None:
                        odd[settings.key(cls, field.name)] = 997
        plain = spec.params(attack_specs.AttackSettings(), 8 / 255)
        assert spec.params(attack_specs.AttackSettings(**odd), 8 / 255) == plain, name


def test_a_plugin_cannot_replace_a_built_in_name_or_prefix_silently(tmp_path, monkeypatch):
    """Issue 41: `fgsm` as a no-op attack, `synthetic` as an all-zeros dataset, `mask` as another
    layer, a settings prefix `pgd`: each is a one-line error naming both modules; replace=True
    overrides on purpose; a plugin that exits is named."""
    import dataclasses
    import typing

    import pytest

    from fmfp_tf import defense_registry, plugins
    from fmfp_tf.data import registry as datasets
    from fmfp_tf.errors import UsageError
    from fmfp_tf.evaluation import attack_specs
    from fmfp_tf.settings import Settings, setting

    (tmp_path / "hijack_fgsm.py").write_text(
        "from fmfp_tf.evaluation import attack_specs\n"
        "attack_specs.register(attack_specs.AttackSpec('fgsm', 'FGSM', lambda m, x, y, **k: x,\n"
        "                                              lambda s, eps, r: {}))\n")
    (tmp_path / "hijack_data.py").write_text(
        "from fmfp_tf.data import registry\n"
        "registry.register(registry.Dataset('synthetic', 'zeros', generate=print))\n")
    (tmp_path / "hijack_layer.py").write_text(
        "from fmfp_tf import defense_registry\n"
        "defense_registry.register_layer('mask', 'fmfp_tf.layers.feature_padding:FeaturePadding')\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module, built_in in (("hijack_fgsm", "fmfp_tf.evaluation.attack_specs"),
                             ("hijack_data", "fmfp_tf.data.registry"),
                             ("hijack_layer", "fmfp_tf.defense_registry")):
        with pytest.raises(UsageError) as error:
            plugins.load([module], installed=False)
        assert built_in in str(error.value) and module in str(error.value), str(error.value)
    assert attack_specs.get("fgsm").label == "FGSM" and attack_specs.get("fgsm").function == (
        "fmfp_tf.attacks.fgsm:fgsm")
    assert datasets.DATASETS.origin("synthetic") == "fmfp_tf.data.registry"
    assert defense_registry.LAYERS.origin("mask") == "fmfp_tf.defense_registry"
    with pytest.raises(UsageError, match=r"exits.*exited while being imported \(sys.exit\(3\)\)"):
        plugins.load(["exits"], installed=False)

    # on purpose: replace=True, and the same module registering its own name again
    spec = attack_specs.get("fgsm")
    try:
        attack_specs.register(dataclasses.replace(spec, label="FGSM, replaced"), replace=True)
        assert attack_specs.get("fgsm").label == "FGSM, replaced"
        attack_specs.register(dataclasses.replace(spec, label="FGSM, again"))  # same module
    finally:
        attack_specs.register(spec, replace=True)
    assert attack_specs.get("fgsm") is spec

    @dataclasses.dataclass(frozen=True)
    class Clash(Settings):
        prefix: typing.ClassVar[str] = "pgd"
        steps: int = setting(3, "a plugin's PGD steps", minimum=1)

    clash = attack_specs.AttackSpec("clash", "Clash", lambda m, x, y, **k: x,
                                    lambda s, eps, r: {}, settings=(Clash,))
    attack_specs.register(clash)
    try:
        with pytest.raises(UsageError, match=r"test_settings.Clash and fmfp_tf.attacks.pgd.PGDSettings both declare 'pgd_steps'"):
            attack_specs.setting_groups()
    finally:
        attack_specs.ATTACKS._entries.pop("clash")
        attack_specs.ATTACKS._origins.pop("clash")
