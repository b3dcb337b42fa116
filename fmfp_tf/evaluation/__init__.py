"""Evaluation: robust accuracy under threat models, gradient-masking checks, reports."""
from fmfp_tf.evaluation.diagnostics import check as masking_checks
from fmfp_tf.evaluation.report import write as write_report
from fmfp_tf.evaluation.robustness import (ATTACK_NAMES, AttackSettings, ModelEntry, evaluate,
                                           load_entry)
from fmfp_tf.evaluation.threat_models import THREAT_MODELS

__all__ = ["evaluate", "load_entry", "AttackSettings", "ModelEntry", "write_report",
           "masking_checks", "ATTACK_NAMES", "THREAT_MODELS"]
