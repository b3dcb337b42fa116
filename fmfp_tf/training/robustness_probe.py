"""Robust accuracy during training, and the guard against catastrophic overfitting.

After every epoch, FGSM and PGD-10 (one random start) attack a fixed batch of training images
held out from training, at the adversarial-training budget, on the model that would be saved
(the averaged one under weight averaging). The numbers go to the history (`probe_fgsm_accuracy`,
`probe_pgd_accuracy`) and TensorBoard, so the robust learning curve is visible beside the clean
one.

Catastrophic overfitting (Wong et al. 2020, "Fast is better than free"): single-step
adversarial training can suddenly lose all robustness to multi-step attacks while its accuracy
on single-step examples rises, because the model learns to defeat FGSM's linear approximation.
`collapsed_epochs` flags epochs whose PGD accuracy fell below half the best so far (and by more
than 10 points) while FGSM accuracy did not fall; the guard warns, and by default the run
restores the weights of its best PGD epoch (kept in `checkpoints/best.weights.h5`).
"""
import logging
import os

import numpy as np

from fmfp_tf import atomic

logger = logging.getLogger(__name__)

BEST_WEIGHTS = "best.weights.h5"


def collapsed_epochs(history):
    """Epoch numbers (1-based) where PGD accuracy collapsed while FGSM accuracy held or rose."""
    flagged, best = [], None
    for previous, record in zip([None] + history[:-1], history):
        pgd = record.get("probe_pgd_accuracy")
        if pgd is None:
            continue
        if best is not None and pgd < 0.5 * best and best - pgd > 0.10:
            fgsm_before = previous.get("probe_fgsm_accuracy") if previous else None
            if fgsm_before is None or record["probe_fgsm_accuracy"] >= fgsm_before:
                flagged.append(record["epoch"])
        best = pgd if best is None else max(best, pgd)
    return flagged


def best_epoch(history):
    """The epoch (1-based) of the highest PGD accuracy on the probe; the earliest of ties."""
    scored = [(r["probe_pgd_accuracy"], -r["epoch"]) for r in history
              if r.get("probe_pgd_accuracy") is not None]
    return -max(scored)[1] if scored else None


class RobustProbe:
    """FGSM and PGD accuracy of a fixed held-out batch, and the best epoch's weights."""

    def __init__(self, x, y, eps, checkpoint_dir, write_files=True, pgd_steps=10, seed=0):
        self.x, self.y, self.eps = x, y, eps
        self.pgd_steps, self.seed = pgd_steps, seed
        self.best_path = os.path.join(checkpoint_dir, BEST_WEIGHTS)
        self.write_files = write_files

    def measure(self, model):
        from fmfp_tf.attacks import common, fgsm, pgd

        def accuracy(images):
            return float(np.mean(common.predict_logits(model, images).argmax(-1) == self.y))

        return {
            "probe_fgsm_accuracy": accuracy(fgsm(model, self.x, self.y, self.eps)),
            "probe_pgd_accuracy": accuracy(pgd(model, self.x, self.y, self.eps,
                                               steps=self.pgd_steps, seed=self.seed)),
        }

    def observe(self, history, model):
        """After an epoch's record joined `history`: keeps the best weights, warns on collapse."""
        latest = history[-1]
        if best_epoch(history) == latest["epoch"] and self.write_files:
            os.makedirs(os.path.dirname(self.best_path), exist_ok=True)
            with atomic.atomic_path(self.best_path, suffix=".weights.h5") as tmp:
                model.save_weights(tmp)
        if latest["epoch"] in collapsed_epochs(history):
            logger.warning(
                "epoch %d: catastrophic overfitting: PGD accuracy on the held-out probe fell to "
                "%.3f (best %.3f, epoch %d) while FGSM accuracy is %.3f", latest["epoch"],
                latest["probe_pgd_accuracy"], max(r["probe_pgd_accuracy"] for r in history),
                best_epoch(history), latest["probe_fgsm_accuracy"])

    def selection(self, history, restore):
        """What metrics.json records, and whether the best epoch's weights should replace the
        last ones (a collapse happened and `restore` is on)."""
        collapsed = collapsed_epochs(history)
        best = best_epoch(history)
        restored = bool(restore and collapsed and best != history[-1]["epoch"]
                        and os.path.isfile(self.best_path))
        return {"best_epoch": best, "collapsed_epochs": collapsed, "restored": restored,
                "probe_images": int(len(self.y)), "eps": self.eps, "pgd_steps": self.pgd_steps}
