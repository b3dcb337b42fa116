"""Choosing a tf.distribute strategy by name.

| name | strategy |
| --- | --- |
| default | the default (no distribution) strategy |
| mirrored | MirroredStrategy over all visible GPUs (or the CPU) |
| multiworker | MultiWorkerMirroredStrategy configured by the TF_CONFIG variable |
| auto | mirrored when more than one GPU is visible, else default |
"""
import json
import os

import tensorflow as tf

from fmfp_tf.config import STRATEGIES as NAMES  # named once, without TensorFlow, in config
from fmfp_tf.errors import UsageError


def get_strategy(name="auto"):
    if name not in NAMES:
        raise UsageError(f"unknown strategy {name!r}; expected one of {', '.join(NAMES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise UsageError(
            "strategy multiworker needs the TF_CONFIG environment variable "
            '(e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}})'
        )
    try:
        json.loads(tf_config)
    except ValueError:
        raise UsageError(f"TF_CONFIG is not valid JSON: {tf_config[:80]!r}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def name_of(strategy):
    """The name users know a strategy by (`default`, `mirrored`, `multiworker`), not its class."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multiworker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    return "default"


def is_chief(strategy):
    """True on the worker that writes files: the only one, or worker 0 / the chief."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    spec = resolver.cluster_spec().as_dict()
    if not spec:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if "chief" in spec:
        return task_type == "chief"
    return task_type in (None, "worker") and (task_id or 0) == 0
