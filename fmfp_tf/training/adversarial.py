"""Adversarial-training baselines: FGSM-AT, PGD-AT and C&W-AT.

- fgsm-at (Goodfellow et al. 2015): each batch mixes the clean loss and the loss on FGSM examples
  crafted against the current weights (clean weight 0.5 by default).
- pgd-at (Madry et al. 2018): the loss is on PGD examples (k steps, random start, step
  2.5 * eps / k) crafted against the current weights (clean weight 0 by default).
- cw-at (the paper's table 4): the training set is augmented once with C&W L2 examples crafted
  on the undefended twin model (same dataset, model and seed, no defense), keeping true labels.
- mask+pgd-at / padding+pgd-at: the FM/FP layer is part of the model during PGD-AT.

Examples are crafted with the model in inference mode (no dropout, batch-norm statistics frozen).
"""
import os

import numpy as np
import tensorflow as tf

from fmfp_tf.attacks.cw import cw_l2
from fmfp_tf.attacks.fgsm import fgsm_graph
from fmfp_tf.attacks.pgd import pgd_graph
from fmfp_tf.data.images import Arrays

DEFAULT_CLEAN_WEIGHT = {"fgsm": 0.5, "pgd": 0.0}


def perturbation(config, model):
    """(perturb(x, y) -> x_adv or None, clean_weight) for the config's online adversarial training."""
    method = config.adversarial_training
    if method not in ("fgsm", "pgd"):
        return None, 0.0
    eps = tf.constant(config.at_eps, tf.float32)
    clean_weight = (config.at_clean_fraction if config.at_clean_fraction is not None
                    else DEFAULT_CLEAN_WEIGHT[method])
    if method == "fgsm":
        def perturb(x, y):
            return tf.stop_gradient(fgsm_graph(model, x, y, eps))
        return perturb, clean_weight

    steps = config.at_steps
    step_size = config.at_step_size or 2.5 * config.at_eps / steps
    generator = tf.random.Generator.from_seed(config.seed + 7919)

    def perturb(x, y):
        seed = generator.make_seeds(1)[:, 0]
        return tf.stop_gradient(pgd_graph(model, x, y, eps, step_size, steps, "inf", True, seed))

    perturb.generator = generator
    return perturb, clean_weight


def cw_augmented(config, train_arrays, out_dir, verbose=1, twin_dir=None):
    """The training set plus C&W examples crafted on the undefended twin (trained if needed)."""
    from fmfp_tf.training.run import train
    from fmfp_tf.models_io import load_model

    twin = config.undefended_twin()
    twin_dir = twin_dir or os.path.join(out_dir, "twin-undefended")
    if not os.path.isfile(os.path.join(twin_dir, "metrics.json")):
        if verbose:
            print(f"cw-at: training the undefended twin into {twin_dir}")
        resume = os.path.isfile(os.path.join(twin_dir, "config.json"))
        train(twin, twin_dir, resume=resume, verbose=verbose)
    source = load_model(os.path.join(twin_dir, "model.keras"))
    count = max(1, int(round(config.cw_at_fraction * len(train_arrays.labels))))
    chosen = np.random.default_rng(config.seed).choice(len(train_arrays.labels), count,
                                                        replace=False)
    x = train_arrays.images[chosen].astype(np.float32) / 255.0
    y = train_arrays.labels[chosen]
    if verbose:
        print(f"cw-at: crafting {count} C&W examples on the twin "
              f"({config.cw_at_iterations} iterations)")
    x_adv = cw_l2(source, x, y, max_iterations=config.cw_at_iterations, binary_search_steps=4)
    adversarial = np.clip(np.round(x_adv * 255.0), 0, 255).astype(np.uint8)
    return Arrays(np.concatenate([train_arrays.images, adversarial]),
                  np.concatenate([train_arrays.labels, y]).astype(np.int32),
                  train_arrays.class_names, train_arrays.skipped)
