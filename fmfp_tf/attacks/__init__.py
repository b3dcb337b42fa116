"""Attacks: one plain function per attack, each on batches of [0, 1] images, from logits.

| function | attack | budget |
| --- | --- | --- |
| fgsm | FGSM (Goodfellow et al. 2015) | L-inf eps |
| ifgsm | I-FGSM / BIM (Kurakin et al. 2017) | L-inf eps, steps, step eps/4 |
| rfgsm | R+FGSM (Tramer et al. 2018) | L-inf eps, alpha = eps/2 |
| pgd | PGD, L-inf or L2, random start, restarts (Madry et al. 2018) | eps, steps, restarts |
| cw_l2 | Carlini-Wagner L2, untargeted (Carlini & Wagner 2017) | unbounded L2, minimised |
| apgd | Auto-PGD, CE / DLR / targeted DLR, L-inf or L2 (Croce & Hein 2020) | eps, steps, restarts |
| fab | FAB-T, targeted minimum-norm L-inf (Croce & Hein 2020), counted within eps | L-inf eps, steps, targets |
| square | Square Attack, score-based, no gradients (Andriushchenko et al. 2020) | L-inf eps, queries |
| autoattack | per-example worst case over APGD-CE, APGD-T, FAB-T, Square (or the EOT `rand` version) | L-inf eps |
| autoattack_fast | not the standard AutoAttack: short APGD-CE, APGD-T over the 3 likeliest classes, Square where gradients look masked; a tenth of the passes | L-inf eps |
| eot | wraps any attack with Expectation over Transformation (Athalye et al. 2018) | samples |

Every attack runs on the current Keras backend (TensorFlow, JAX or PyTorch) and takes any Keras 3
model or callable x -> logits on it: the attacks are written once with `keras.ops`, and
`fmfp_tf.backend` supplies each framework's input gradient, compilation and loops. Every attack
counts the forward and backward passes it runs (`counting.counted()`). TensorFlow only:
`distributed.craft_distributed` (any attack core over the replicas of a `tf.distribute`
strategy).

CleverHans 4.0.0 is the reference the tests check FGSM, I-FGSM and C&W against (its Keras 3 fixes
live with the tests, in `tests/cleverhans_compat.py`).
"""
from fmfp_tf.attacks import counting
from fmfp_tf.attacks.apgd import apgd
from fmfp_tf.attacks.autoattack import autoattack
from fmfp_tf.attacks.common import parse_eps
from fmfp_tf.attacks.cw import cw_l2
from fmfp_tf.attacks.eot import eot, eot_model
from fmfp_tf.attacks.fab import fab
from fmfp_tf.attacks.fast_autoattack import autoattack_fast
from fmfp_tf.attacks.fgsm import fgsm
from fmfp_tf.attacks.pgd import ifgsm, pgd
from fmfp_tf.attacks.rfgsm import rfgsm
from fmfp_tf.attacks.square import square

__all__ = ["counting", "fgsm", "ifgsm", "rfgsm", "pgd", "cw_l2", "apgd", "fab", "square", "autoattack",
           "autoattack_fast",
           "eot", "eot_model", "parse_eps"]
