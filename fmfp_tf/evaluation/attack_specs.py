"""The attacks `evaluate` knows, in one registry: what each is called, which function runs it,
whether it takes an eps budget, and the keyword arguments it is given, derived from
`AttackSettings` in one place, so the report's "How it was measured" prints exactly what ran.

Adding an attack = a module with its function (anywhere; the built-in ones live in
`fmfp_tf.attacks`) + one `register(...)` line, here or in the caller's code; the CLI's
`--attacks`, table files, reports and the gradient-masking checks read this table. A function
given as "module:name" is imported on first use.
"""
import dataclasses
import importlib
import typing

from fmfp_tf.errors import UsageError


@dataclasses.dataclass
class AttackSettings:
    """Budgets and effort of every attack (the paper's readings and AutoAttack's by default)."""

    ifgsm_steps: int = 10
    pgd_steps: int = 20
    pgd_restarts: int = 1
    cw_iterations: int = 100
    cw_binary_search_steps: int = 5
    cw_confidence: float = 0.0
    cw_learning_rate: float = 0.01
    cw_initial_const: float = 0.01
    apgd_steps: int = 100
    apgd_restarts: int = 1
    apgd_target_classes: int = 9
    square_queries: int = 5000
    eot_samples: int = 10
    precision: str = "float32"  # APGD's and FAB-T's steps; successes are decided in float32
    unbounded_check: bool = True
    batch_size: int = 256
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """One attack as `evaluate` runs it.

    `arguments(settings, eps, randomized)` returns the keyword arguments passed to `function`
    besides the model, the images, the labels, `batch_size` and `progress`; `randomized` says
    whether the attacked model is random at inference.
    """

    name: str
    label: str
    function: typing.Union[typing.Callable, str]  # or "module:name", imported on first use
    arguments: typing.Callable
    bounded: bool = True        # takes an L-inf eps; unbounded attacks run once per threat model
    kind: str = "gradient"      # "gradient", "score" (reads outputs only) or "ensemble"
    selectable: bool = True     # False for the internal unbounded-PGD check
    in_worst_case: bool = True  # counts in the per-example worst case over attacks
    # forward+backward passes per image for these params, at most (a forward-only query counts
    # 1/3): what the plan's time estimate multiplies; None when unknown
    cost: typing.Optional[typing.Callable] = None

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

    def resolve(self):
        """The attack function itself."""
        if not isinstance(self.function, str):
            return self.function
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)

    def craft(self, model, x, y, eps, settings, progress=None, randomized=False):
        return self.resolve()(model, x, y, batch_size=settings.batch_size, progress=progress,
                             **self.kwargs(settings, eps, randomized))


ATTACKS = {}


def register(spec):
    """Adds `spec` to the registry (a later spec of the same name replaces it)."""
    ATTACKS[spec.name] = spec
    return spec


def names_selectable():
    """The attacks a user can ask for, in registry order."""
    return tuple(name for name, spec in ATTACKS.items() if spec.selectable)


def get(name):
    return ATTACKS[name]


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
    images the earlier ones left robust (standard: APGD-CE, APGD-T, FAB-T, Square; rand: APGD-CE
    and APGD-DLR, each with EOT inside)."""
    if p["version"] == "rand":
        from fmfp_tf.attacks.autoattack import EOT_DRAWS

        return 2 * p["steps"] * EOT_DRAWS
    return (p["steps"] + p["steps"] * p["target_classes"] + _fab_cost(p) + p["queries"] / 3)


def _precision(s, randomized=False):
    """The precision argument where it is not the default (so float32 cells keep their keys)."""
    return {} if s.precision == "float32" or randomized else {"precision": s.precision}


def _fab_cost(p):
    """A gradient and a forward check per iteration, per target."""
    return p["steps"] * p["target_classes"] * (1 + 1 / 3)


register(AttackSpec("fgsm", "FGSM", "fmfp_tf.attacks.fgsm:fgsm", lambda s, eps, r: {},
                    cost=lambda p: 1))
register(AttackSpec("ifgsm", "I-FGSM", "fmfp_tf.attacks.pgd:ifgsm",
                    lambda s, eps, r: {"steps": s.ifgsm_steps, "step_size": eps / 4},
                    cost=lambda p: p["steps"]))
register(AttackSpec("rfgsm", "R-FGSM", "fmfp_tf.attacks.rfgsm:rfgsm",
                    lambda s, eps, r: {"alpha": eps / 2, "seed": s.seed},
                    cost=lambda p: 1))
register(AttackSpec("pgd", "PGD", "fmfp_tf.attacks.pgd:pgd",
                    lambda s, eps, r: {"steps": s.pgd_steps, "restarts": s.pgd_restarts,
                                       "step_size": 2.5 * eps / s.pgd_steps, "seed": s.seed},
                    cost=lambda p: p["steps"] * p["restarts"]))
register(AttackSpec("cw", "C&W-L2", "fmfp_tf.attacks.cw:cw_l2",
                    lambda s, eps, r: {"confidence": s.cw_confidence,
                                       "learning_rate": s.cw_learning_rate,
                                       "initial_const": s.cw_initial_const,
                                       "binary_search_steps": s.cw_binary_search_steps,
                                       "max_iterations": s.cw_iterations},
                    bounded=False, in_worst_case=False,
                    cost=lambda p: p["binary_search_steps"] * p["max_iterations"]))
register(AttackSpec("apgd-ce", "APGD-CE", "fmfp_tf.attacks.apgd:apgd",
                    lambda s, eps, r: {"loss": "ce", "steps": s.apgd_steps,
                                       "restarts": s.apgd_restarts, "seed": s.seed,
                                       **_precision(s)},
                    cost=lambda p: p["steps"] * p["restarts"]))
register(AttackSpec("apgd-dlr", "APGD-DLR", "fmfp_tf.attacks.apgd:apgd",
                    lambda s, eps, r: {"loss": "dlr", "steps": s.apgd_steps,
                                       "restarts": s.apgd_restarts, "seed": s.seed,
                                       **_precision(s)},
                    cost=lambda p: p["steps"] * p["restarts"]))
register(AttackSpec("apgd-t", "APGD-T", "fmfp_tf.attacks.apgd:apgd",
                    lambda s, eps, r: {"loss": "dlr", "targeted": True, "steps": s.apgd_steps,
                                       "restarts": s.apgd_restarts,
                                       "target_classes": s.apgd_target_classes, "seed": s.seed,
                                       **_precision(s)},
                    cost=lambda p: p["steps"] * p["restarts"] * p["target_classes"]))
register(AttackSpec("fab-t", "FAB-T", "fmfp_tf.attacks.fab:fab",
                    lambda s, eps, r: {"steps": s.apgd_steps,
                                       "target_classes": s.apgd_target_classes, "seed": s.seed,
                                       **_precision(s)},
                    cost=_fab_cost))
register(AttackSpec("square", "Square", "fmfp_tf.attacks.square:square",
                    lambda s, eps, r: {"queries": s.square_queries, "seed": s.seed},
                    kind="score", cost=lambda p: p["queries"] / 3))
register(AttackSpec("autoattack", "AutoAttack", "fmfp_tf.attacks.autoattack:autoattack",
                    lambda s, eps, r: {"version": "rand" if r else "standard",
                                       "steps": s.apgd_steps,
                                       "target_classes": s.apgd_target_classes,
                                       "queries": s.square_queries, "seed": s.seed,
                                       **_precision(s, r)},
                    kind="ensemble", cost=_autoattack_cost))
register(AttackSpec("pgd-unbounded", "PGD eps=1 (check)", "fmfp_tf.attacks.pgd:pgd",
                    lambda s, eps, r: {"steps": s.pgd_steps, "restarts": s.pgd_restarts,
                                       "step_size": 2.5 * eps / s.pgd_steps, "seed": s.seed},
                    selectable=False, in_worst_case=False,
                    cost=lambda p: p["steps"] * p["restarts"]))
