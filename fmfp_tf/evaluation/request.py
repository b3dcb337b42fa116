"""What one evaluation measures, as one checked object: the CLI, the library and `reproduce`
build an `EvaluationRequest` and pass it to `evaluate`, so every value is parsed once (budgets
as numbers with the text they were given as, the shard as two integers) and checked before the
first model is loaded.

Example:

>>> request = EvaluationRequest.build(attacks=["fgsm", "pgd"], eps=["8/255", 0.1], n=200)
>>> [budget.text for budget in request.eps], request.eps_values[0] == 8 / 255
(['8/255', '0.1'], True)
>>> EvaluationRequest.build(attacks=["fgsm"], n=100, shard="2/4").images()
(25, 25, '2/4', 100)
"""
import dataclasses
import typing

import numpy as np

from fmfp_tf.attacks.common import check_bounds
from fmfp_tf.budgets import parse_eps
from fmfp_tf.errors import UsageError
from fmfp_tf.evaluation import attack_specs, shards, threat_models
from fmfp_tf.evaluation.attack_specs import AttackSettings


@dataclasses.dataclass(frozen=True)
class Budget:
    """An L-inf budget: its value and the text it was given as ("8/255")."""

    value: float
    text: str

    @classmethod
    def of(cls, given):
        """A Budget from a number, a text ("8/255") or a Budget."""
        if isinstance(given, Budget):
            return given
        value = parse_eps(given)
        if isinstance(given, str):
            return cls(value, given.strip())
        from fmfp_tf.evaluation.report import format_eps

        return cls(value, format_eps(value))

    def __float__(self):
        return self.value


@dataclasses.dataclass(frozen=True)
class EvaluationRequest:
    """One evaluation: the attacks (and the white-box-only ones), budgets, threat models, the
    images of the seeded test sample (n, skip, shard), the attacks' settings, the dataset override
    and the models' input range. Build it with `build`, which checks and normalises."""

    attacks: typing.Tuple[str, ...]
    eps: typing.Tuple[Budget, ...]
    threats: typing.Tuple[str, ...] = ("white-box",)
    n: int = 1000
    skip: int = 0
    shard: typing.Optional[typing.Tuple[int, int]] = None
    white_box_attacks: typing.Tuple[str, ...] = ()
    settings: AttackSettings = dataclasses.field(default_factory=AttackSettings)
    dataset: typing.Optional[str] = None
    data_dir: typing.Optional[str] = None
    input_range: typing.Tuple[float, float] = (0.0, 1.0)

    @classmethod
    def build(cls, attacks=None, eps=(8 / 255,), threats=("white-box",), n=1000, skip=0,
              shard=None, white_box_attacks=(), settings=None, dataset=None, data_dir=None,
              input_range=(0.0, 1.0)):
        """A checked request; every problem is a UsageError naming the value. `attacks`: names
        from `attack_specs` (default: every selectable one); `shard`: "K/N" or (K, N)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise UsageError(f"n must be a positive integer; got {n!r}")
        if isinstance(skip, bool) or not isinstance(skip, (int, np.integer)) or skip < 0:
            raise UsageError(f"skip must be a non-negative integer; got {skip!r}")
        if shard is not None:
            shard = shards.parse_shard(shard if isinstance(shard, str) else
                                       "/".join(map(str, shard)))
            shards.shard_range(*shard, int(n))  # a part with no image is refused here
        attacks = (attack_specs.names_selectable() if attacks is None else
                   attack_specs.check_names(list(attacks)))
        threats = threat_models.check_threats(list(threats))
        white_box_attacks = [a for a in attack_specs.check_names(
            list(white_box_attacks), "white_box_attacks") if a not in attacks] \
            if white_box_attacks else []
        if white_box_attacks and "white-box" not in threats:
            raise UsageError(f"white_box_attacks={white_box_attacks} needs the white-box threat "
                             f"model; threats are {', '.join(threats)}")
        budgets = tuple(Budget.of(value) for value in eps)
        low, high = check_bounds(input_range)
        return cls(tuple(attacks), budgets, tuple(threats), int(n), int(skip), shard,
                   tuple(white_box_attacks), settings or AttackSettings(), dataset, data_dir,
                   (low, high))

    @property
    def eps_values(self):
        return [budget.value for budget in self.eps]

    def images(self):
        """(skip, n, shard text or None, the whole sample's n or None): the images this request
        attacks, after its shard."""
        if self.shard is None:
            return self.skip, self.n, None, None
        first, after = shards.shard_range(*self.shard, self.n)
        return self.skip + first, after - first, "/".join(map(str, self.shard)), self.n
