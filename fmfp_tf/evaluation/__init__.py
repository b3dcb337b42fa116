"""Evaluation: robust accuracy under threat models, gradient-masking checks, reports.

`write_report` (matplotlib) is imported on first use, so reading the attack registry or
evaluating needs no plotting library.
"""
from fmfp_tf.evaluation.attack_specs import AttackSettings, names_selectable
from fmfp_tf.evaluation.diagnostics import check as masking_checks
from fmfp_tf.evaluation.request import Budget, EvaluationRequest
from fmfp_tf.evaluation.robustness import ModelEntry, evaluate, load_entry
from fmfp_tf.evaluation.threat_models import THREAT_MODELS


def __getattr__(name):
    if name == "write_report":
        from fmfp_tf.evaluation.report import write

        return write
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["evaluate", "load_entry", "AttackSettings", "EvaluationRequest", "Budget",
           "ModelEntry", "write_report",
           "masking_checks", "names_selectable", "THREAT_MODELS"]
