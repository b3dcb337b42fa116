"""The attacks `evaluate` knows, in one registry: what each is called, which function runs it,
whether it takes an eps budget, which settings groups it reads, and the keyword arguments it is
given, so the report's "How it was measured" prints exactly what ran.

Each attack declares its own settings beside its function (`attacks.pgd.PGDSettings`: the key
`pgd_steps`, the flag `--pgd-steps`); `AttackSettings` holds every registered group, and the CLI's
options, table-file keys and their checks are derived from them. Adding an attack, settings and
all, is a module with its function + one `register(...)` line, here or in a plugin module.
"""
import dataclasses
import inspect
import typing

from fmfp_tf import registry
from fmfp_tf import settings as settings_lib
from fmfp_tf.attacks import counting
from fmfp_tf.settings import MAX_BATCH_SIZE
from fmfp_tf.errors import UsageError
from fmfp_tf.settings import MAX_COUNT, Settings, setting


@dataclasses.dataclass(frozen=True)
class EvaluationSettings(Settings):
    """What every attack of an evaluation shares (the paper's readings by default)."""

    eot_samples: int = setting(10, "draws averaged per EOT gradient and per prediction of a "
                                   "model random at inference", minimum=1, maximum=MAX_COUNT)
    precision: str = setting("auto", "bfloat16: APGD's and FAB-T's steps on a bfloat16 twin "
                                     "of the model, every success decided in float32; auto: "
                                     "bfloat16 on a CPU with native bfloat16 (AVX512-BF16, AMX) "
                                     "and no accelerator, where it measured faster at equal "
                                     "strength, float32 elsewhere",
                             choices=("auto", "float32", "bfloat16"), flag="--attack-precision")
    unbounded_check: bool = setting(True, "run the unbounded-PGD gradient-masking check")
    batch_size: int = setting(256, "images per attack batch", minimum=1, maximum=MAX_BATCH_SIZE)
    seed: int = setting(0, "seeds every attack's random starts", minimum=0, maximum=2 ** 32 - 1)


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack as `evaluate` runs it.

    `arguments(settings, eps, randomized)` returns the keyword arguments passed to `function`
    besides the model, the images, the labels, `batch_size` and `progress`; `settings` is an
    `AttackSettings` (`settings.pgd.steps`), `randomized` says whether the attacked model is
    random at inference. `settings` names the groups the attack reads ("module:Class").
    """

    name: str
    label: str
    function: typing.Union[typing.Callable, str]  # or "module:name", imported on first use
    arguments: typing.Callable
    settings: typing.Tuple[typing.Union[type, str], ...] = ()
    bounded: bool = True        # takes an L-inf eps; unbounded attacks run once per threat model
    kind: str = "gradient"      # "gradient", "score" (reads outputs only) or "ensemble"
    selectable: bool = True     # False for the internal unbounded-PGD check
    in_worst_case: bool = True  # counts in the per-example worst case over attacks
    # passes per image for these params, at most, in the unit records count
    # (`counting.Passes` or {"forward": F, "backward": B}; a number n means n gradients): what
    # the plan's time estimate multiplies; None when unknown
    cost: typing.Optional[typing.Callable] = None

    def planned_passes(self, params):
        """The declared cost as `counting.Passes` per image (None when undeclared)."""
        if self.cost is None:
            return None
        return as_passes(self.cost(params))

    def kwargs(self, settings, eps, randomized=False):
        values = dict(self.arguments(settings, eps, randomized))
        if self.bounded:
            values["eps"] = eps
        return values

    def params(self, settings, eps, randomized=False):
        """What the report records: the arguments without eps (recorded in its own column)."""
        values = self.kwargs(settings, eps, randomized)
        values.pop("eps", None)
        return values

    def setting_groups(self):
        return tuple(registry.resolve(group) for group in self.settings)

    def resolve(self):
        """The attack function itself."""
        return registry.resolve(self.function)

    def craft(self, model, x, y, eps, settings, progress=None, randomized=False, **hooks):
        """The adversarial examples. `hooks` go to the attacks whose function takes them, the
        others never see them: AutoAttack's `stages` (where a long cell keeps its finished
        parts) and `log` (the share still robust after each of its attacks)."""
        function = self.resolve()
        takes = inspect.signature(function).parameters
        extra = {k: v for k, v in hooks.items() if v is not None and k in takes}
        return function(model, x, y, batch_size=settings.batch_size, progress=progress,
                        **self.kwargs(settings, eps, randomized), **extra)


ATTACKS = registry.Registry("attack", entry_type=AttackSpec)


def as_passes(cost):
    """A declared cost as `counting.Passes`: Passes, a {"forward", "backward"} dict, or a number
    of gradients (each a forward and a backward pass)."""
    if isinstance(cost, counting.Passes):
        return cost
    if isinstance(cost, dict):
        return counting.Passes(float(cost["forward"]), float(cost["backward"]))
    return counting.Passes(float(cost), float(cost))


def _gradients(count, forward=0):
    """`count` gradients per image, plus `forward` forward-only passes."""
    return counting.Passes(count + forward, count)


def register(spec, replace=False):
    """Adds `spec` to the registry; a name registered by another module is an error unless
    `replace=True` (`Registry.register`)."""
    return ATTACKS.register(spec.name, spec, replace=replace)


registry.passes_registrations_on(__name__)


def setting_groups():
    """Every settings class an evaluation reads: the shared one, then each registered attack's,
    once each, in registry order."""
    groups = [EvaluationSettings]
    for spec in ATTACKS.values():
        groups += [group for group in spec.setting_groups() if group not in groups]
    _check_prefixes(groups)
    return groups


def _check_prefixes(groups):
    """Two settings classes may not share a prefix, nor spell one flat key (`pgd_steps`): one
    would take the other's options over."""
    seen = {}
    for group in groups:
        for key in (settings_lib.key(group, f.name) for f in settings_lib.fields(group)):
            other = seen.setdefault(key, group)
            if other is not group:
                raise UsageError(
                    f"settings {group.__module__}.{group.__name__} and "
                    f"{other.__module__}.{other.__name__} both declare {key!r} (prefix "
                    f"{group.prefix!r}); give one of them another prefix")


class AttackSettings:
    """The settings of one evaluation: `EvaluationSettings`' keys as they are (`batch_size`) and
    each attack group's as `prefix_name` (`pgd_steps`), the spelling of table files.

    Read a group as `settings.pgd` (a frozen `PGDSettings`) or a key as `settings.pgd_steps`.
    Unknown keys and bad values raise a UsageError that names them as `spell(cls, name)` gives
    (the flat key by default; the CLI passes its flags).
    """

    def __init__(self, spell=None, **values):
        spell = spell or settings_lib.key
        fields = {settings_lib.key(cls, f.name): (cls, f.name)
                  for cls in setting_groups() for f in settings_lib.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UsageError(f"unknown attack setting(s) {', '.join(unknown)}; expected "
                             f"{', '.join(fields)}")
        chosen = {}
        for key, value in values.items():
            cls, name = fields[key]
            chosen.setdefault(cls, {})[name] = value
        self._groups = {cls.prefix: settings_lib.build(cls, chosen.get(cls, {}), spell)
                        for cls in setting_groups()}
        self._fields = fields

    @staticmethod
    def keys():
        return tuple(settings_lib.key(cls, f.name) for cls in setting_groups()
                     for f in settings_lib.fields(cls))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        groups = self.__dict__.get("_groups", {})
        if name in groups and name:
            return groups[name]
        if name in self._fields:
            cls, field = self._fields[name]
            return getattr(groups[cls.prefix], field)
        raise AttributeError(f"AttackSettings has no setting or group {name!r}")

    def to_dict(self):
        """{flat key: value} of every setting."""
        return {key: getattr(self, key) for key in self._fields}

    def __eq__(self, other):
        return isinstance(other, AttackSettings) and self.to_dict() == other.to_dict()

    def __repr__(self):
        changed = {k: v for k, v in self.to_dict().items() if v != _default(*self._fields[k])}
        return f"AttackSettings({', '.join(f'{k}={v!r}' for k, v in changed.items())})"


def _default(cls, name):
    return next(f.default for f in settings_lib.fields(cls) if f.name == name)


def names_selectable():
    """The attacks a user can ask for, in registry order."""
    return tuple(name for name, spec in ATTACKS.items() if spec.selectable)


def get(name):
    return ATTACKS[name]


def readers(group):
    """The attacks (checks included) that read settings class `group`."""
    return tuple(name for name, spec in ATTACKS.items() if group in spec.setting_groups())


def check_names(names, source="attacks"):
    """`names` (a list) when every one is a selectable attack; else a UsageError naming `source`."""
    unknown = [name for name in names if name not in names_selectable()]
    if unknown or not names:
        raise UsageError(f"{source}: unknown {', '.join(unknown) or 'empty list'}; expected "
                         f"names from {', '.join(names_selectable())}")
    return list(names)


def gradient_attacks():
    """The selectable bounded attacks that follow the model's gradient alone."""
    return tuple(name for name, spec in ATTACKS.items()
                 if spec.kind == "gradient" and spec.bounded and spec.selectable)


def label(name):
    return {"none": "No attack", "worst-case": "Worst case over all attacks"}.get(
        name, ATTACKS[name].label if name in ATTACKS else name)


def _autoattack_cost(p):
    """Every component on every image: an upper bound, as each later component attacks only the
    images the earlier ones left robust."""
    from fmfp_tf.attacks.autoattack import planned_passes, plan

    return sum((planned_passes(function, kwargs) for _, function, kwargs in plan(
        p["version"], p["steps"], p["target_classes"], p["queries"])), counting.Passes())


def _fast_cost(p):
    """Every stage on every image, except a stage that selects its images (Square, only where
    gradients look masked: on none of the models measured), which counts its check alone, one
    gradient per image; counting its queries on every image would put the bound 10x too high."""
    from fmfp_tf.attacks.autoattack import planned_passes
    from fmfp_tf.attacks.fast_autoattack import EOT_DRAWS, plan

    stages = plan(p["steps"], p["target_steps"], p["target_classes"], p["close_targets"],
                  p["close_margin"], p["close_steps"], p["queries"],
                  EOT_DRAWS if p["randomized"] else None, p.get("restart_margin", 0.15))
    return sum((counting.Passes(1, 1) if kwargs.get("select") is not None
                else planned_passes(function, kwargs) for _, function, kwargs in stages),
               counting.Passes())


def _precision(s, randomized=False):
    """The precision argument where it is not float32 (so float32 cells keep their keys): the
    record's params say when an attack ran in bfloat16. "auto" is resolved on this machine."""
    from fmfp_tf.attacks import precision as precision_lib

    used = precision_lib.resolve(s.precision)
    return {} if used == "float32" or randomized else {"precision": used}


def _fab_cost(p):
    """A gradient and a forward check per iteration, per target (AutoAttack's FAB-T count)."""
    from fmfp_tf.attacks.autoattack import planned_passes
    from fmfp_tf.attacks.fab import fab

    return planned_passes(fab, p)


def _apgd(loss, targeted=False):
    def arguments(s, eps, r):
        values = {"loss": loss, "steps": s.apgd.steps, "restarts": s.apgd.restarts,
                  "seed": s.seed, **_precision(s)}
        if targeted:
            values.update(targeted=True, target_classes=s.apgd.target_classes)
        return values
    return arguments


def _pgd(s, eps, r):
    return {"steps": s.pgd.steps, "restarts": s.pgd.restarts,
            "step_size": 2.5 * eps / s.pgd.steps, "seed": s.seed}


_A = "fmfp_tf.attacks"
register(AttackSpec("fgsm", "FGSM", f"{_A}.fgsm:fgsm", lambda s, eps, r: {}, cost=lambda p: 1))
register(AttackSpec("ifgsm", "I-FGSM", f"{_A}.pgd:ifgsm",
                    lambda s, eps, r: {"steps": s.ifgsm.steps, "step_size": eps / 4},
                    settings=(f"{_A}.pgd:IFGSMSettings",),
                    cost=lambda p: _gradients(p["steps"], 1)))
register(AttackSpec("rfgsm", "R-FGSM", f"{_A}.rfgsm:rfgsm",
                    lambda s, eps, r: {"alpha": eps / 2, "seed": s.seed},
                    cost=lambda p: _gradients(1)))
register(AttackSpec("pgd", "PGD", f"{_A}.pgd:pgd", _pgd, settings=(f"{_A}.pgd:PGDSettings",),
                    cost=lambda p: _gradients(p["steps"] * p["restarts"], p["restarts"])))
register(AttackSpec("cw", "C&W-L2", f"{_A}.cw:cw_l2",
                    lambda s, eps, r: {"confidence": s.cw.confidence,
                                       "learning_rate": s.cw.learning_rate,
                                       "initial_const": s.cw.initial_const,
                                       "binary_search_steps": s.cw.binary_search_steps,
                                       "max_iterations": s.cw.iterations},
                    settings=(f"{_A}.cw:CWSettings",), bounded=False, in_worst_case=False,
                    cost=lambda p: _gradients(p["binary_search_steps"] * p["max_iterations"])))
register(AttackSpec("apgd-ce", "APGD-CE", f"{_A}.apgd:apgd", _apgd("ce"),
                    settings=(f"{_A}.apgd:APGDSettings",),
                    cost=lambda p: _gradients((p["steps"] + 1) * p["restarts"], 1)))
register(AttackSpec("apgd-dlr", "APGD-DLR", f"{_A}.apgd:apgd", _apgd("dlr"),
                    settings=(f"{_A}.apgd:APGDSettings",),
                    cost=lambda p: _gradients((p["steps"] + 1) * p["restarts"], 1)))
register(AttackSpec("apgd-t", "APGD-T", f"{_A}.apgd:apgd", _apgd("dlr", targeted=True),
                    settings=(f"{_A}.apgd:APGDSettings",),
                    cost=lambda p: _gradients((p["steps"] + 1) * p["restarts"]
                                              * p["target_classes"], 1)))
register(AttackSpec("fab-t", "FAB-T", f"{_A}.fab:fab",
                    lambda s, eps, r: {"steps": s.fab.steps,
                                       "target_classes": s.fab.target_classes, "seed": s.seed,
                                       **_precision(s)},
                    settings=(f"{_A}.fab:FABSettings",), cost=_fab_cost))
register(AttackSpec("square", "Square", f"{_A}.square:square",
                    lambda s, eps, r: {"queries": s.square.queries, "seed": s.seed},
                    settings=(f"{_A}.square:SquareSettings",), kind="score",
                    cost=lambda p: counting.Passes(p["queries"] + 1, 0)))
register(AttackSpec("autoattack", "AutoAttack", f"{_A}.autoattack:autoattack",
                    lambda s, eps, r: {"version": "rand" if r else "standard",
                                       "steps": s.autoattack.steps,
                                       "target_classes": s.autoattack.target_classes,
                                       "queries": s.autoattack.queries, "seed": s.seed,
                                       **_precision(s, r)},
                    settings=(f"{_A}.autoattack:AutoAttackSettings",), kind="ensemble",
                    cost=_autoattack_cost))
register(AttackSpec("autoattack-fast", "AutoAttack-fast (not the standard AutoAttack)",
                    f"{_A}.fast_autoattack:autoattack_fast",
                    lambda s, eps, r: {"steps": s.autoattack_fast.steps,
                                       "target_steps": s.autoattack_fast.target_steps,
                                       "target_classes": s.autoattack_fast.target_classes,
                                       "close_targets": s.autoattack_fast.close_targets,
                                       "close_margin": s.autoattack_fast.close_margin,
                                       "close_steps": s.autoattack_fast.close_steps,
                                       "restart_margin": s.autoattack_fast.restart_margin,
                                       "queries": s.autoattack_fast.queries, "randomized": r,
                                       "seed": s.seed, **_precision(s, r)},
                    settings=(f"{_A}.fast_autoattack:FastAutoAttackSettings",), kind="ensemble",
                    cost=_fast_cost))
register(AttackSpec("pgd-unbounded", "PGD eps=1 (check)", f"{_A}.pgd:pgd", _pgd,
                    settings=(f"{_A}.pgd:PGDSettings",), selectable=False, in_worst_case=False,
                    cost=lambda p: _gradients(p["steps"] * p["restarts"], p["restarts"])))
