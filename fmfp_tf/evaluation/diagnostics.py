"""Gradient-masking checks (Carlini et al. 2019, "On evaluating adversarial robustness";
Athalye et al. 2018, "Obfuscated gradients give a false sense of security").

Each check compares cells of the results and returns a warning naming the cells it violates:
1. iterative attacks (I-FGSM, PGD) are at least as strong as the one-step FGSM at the same eps;
2. accuracy does not rise as eps grows;
3. an unbounded attack (PGD with eps = 1) drives accuracy to about 0;
4. transfer attacks are not stronger than white-box attacks on the same model;
5. the score-based Square attack, which reads no gradient, is not stronger than the gradient
   attacks on the same model and eps (AutoAttack's flag for gradients that mislead); inside
   the AutoAttack ensemble, Square (run last, on the images the gradient attacks left) takes no
   more than half a percent of the images;
6. no input has an exactly zero loss gradient (AutoAttack's flag: gradient attacks see nothing);
7. a model random at inference is evaluated with EOT (the adaptive threat model, or AutoAttack's
   rand version), not only by attacks that see one random draw.
A difference counts only beyond the sampling noise: 2 standard errors of the accuracies (at least
one point).
"""
import math

from fmfp_tf.evaluation import attack_specs

# Square's share of all images inside AutoAttack above which the gradient attacks are suspect:
# the images are the same (nested), so this is a count, not a difference of two samples
SQUARE_TAKES = 0.005


def _tolerance(a, b, n):
    se = math.sqrt(max(a * (1 - a), b * (1 - b), 1e-4) / max(n, 1))
    return max(0.01, 2 * se)


def _cells(records):
    return {(r["model"], r["threat_model"], r["attack"], r["eps"]): r for r in records}


def check(records, unbounded_threshold=0.05):
    """A list of warning strings; empty when no check is violated."""
    cells = _cells(records)
    warnings = []
    for (model, threat, attack, eps), record in cells.items():
        n = record["n"]
        if attack in ("ifgsm", "pgd"):
            one_step = cells.get((model, threat, "fgsm", eps))
            if one_step and record["accuracy"] > one_step["accuracy"] + _tolerance(
                    record["accuracy"], one_step["accuracy"], n):
                warnings.append(
                    f"{model} [{threat}] eps={eps:.4g}: iterative {attack} accuracy "
                    f"{record['accuracy']:.3f} > one-step fgsm {one_step['accuracy']:.3f} "
                    "(gradient masking?)")
        if attack == "pgd-unbounded" and record["accuracy"] > unbounded_threshold:
            warnings.append(
                f"{model} [{threat}]: unbounded PGD (eps=1) leaves accuracy "
                f"{record['accuracy']:.3f} > {unbounded_threshold} (gradient masking or too few "
                "steps)")
        if threat == "transfer":
            white = cells.get((model, "white-box", attack, eps))
            if white and record["accuracy"] < white["accuracy"] - _tolerance(
                    record["accuracy"], white["accuracy"], n):
                warnings.append(
                    f"{model} {attack} eps={eps if eps is None else round(eps, 4)}: transfer "
                    f"accuracy {record['accuracy']:.3f} < white-box {white['accuracy']:.3f} "
                    "(the white-box attack is weaker than a transferred one: gradient masking?)")
    warnings += _ensemble_checks(records, cells)
    by_curve = {}
    for (model, threat, attack, eps), record in cells.items():
        if eps is not None and attack not in ("none", "pgd-unbounded"):
            by_curve.setdefault((model, threat, attack), []).append((eps, record))
    for (model, threat, attack), points in by_curve.items():
        points.sort(key=lambda p: p[0])
        for (eps_a, a), (eps_b, b) in zip(points, points[1:]):
            if b["accuracy"] > a["accuracy"] + _tolerance(a["accuracy"], b["accuracy"], a["n"]):
                warnings.append(
                    f"{model} [{threat}] {attack}: accuracy rises from {a['accuracy']:.3f} at "
                    f"eps={eps_a:.4g} to {b['accuracy']:.3f} at eps={eps_b:.4g}")
    return sorted(set(warnings))


def _ensemble_checks(records, cells):
    warnings = []
    for (model, threat, attack, eps), record in cells.items():
        if attack != "square":
            continue
        gradient = [cells[(model, threat, a, eps)] for a in attack_specs.gradient_attacks()
                    if (model, threat, a, eps) in cells]
        if not gradient:
            continue
        strongest = min(gradient, key=lambda r: r["accuracy"])
        if record["accuracy"] < strongest["accuracy"] - _tolerance(
                record["accuracy"], strongest["accuracy"], record["n"]):
            warnings.append(
                f"{model} [{threat}] eps={eps:.4g}: the black-box Square attack leaves "
                f"{record['accuracy']:.3f} < {strongest['attack']} {strongest['accuracy']:.3f} "
                "(gradients that mislead the white-box attacks: gradient masking?)")
    for record in records:
        # AutoAttack's own check: Square runs last, on what the gradient attacks left; if it
        # takes a share of those, the gradients misled the white-box attacks
        shares = list(record.get("components", {}).items())
        if len(shares) >= 2 and shares[-1][0] == "square":
            taken = shares[-2][1] - shares[-1][1]
            if taken > SQUARE_TAKES:
                warnings.append(
                    f"{record['model']} [{record['threat_model']}] eps={record['eps']:.4g}: "
                    f"inside AutoAttack, Square took {100 * taken:.1f} % of the images the "
                    "gradient attacks left (gradients that mislead them: gradient masking?)")
    for record in records:
        share = record.get("zero_gradient_share")
        if record["attack"] == "none" and share:
            warnings.append(
                f"{record['model']}: {100 * share:.1f} % of the inputs have an exactly zero loss "
                "gradient (saturated or masked gradients; the DLR-loss attacks and Square do not "
                "depend on it)")
    randomized = {r["model"] for r in records if r.get("randomized")}
    for model in sorted(randomized):
        with_eot = [r for r in records if r["model"] == model and (
            r["threat_model"] == "adaptive"
            or (r["attack"] == "autoattack" and r["params"].get("version") == "rand")
            or (r["attack"] == "autoattack-fast" and r["params"].get("randomized")))]
        attacked = [r for r in records if r["model"] == model and r["attack"] != "none"]
        if attacked and not with_eot:
            warnings.append(
                f"{model}: random at inference but evaluated without EOT; its robust accuracy is "
                "overstated until it is attacked with --threat adaptive or --attacks autoattack "
                "(the rand version)")
    return warnings
