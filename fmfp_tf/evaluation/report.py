"""Writing evaluation results: results.json, results.csv, results.md and plots, all atomic."""
import csv
import io
import os

from fmfp_tf import atomic, plots, provenance
from fmfp_tf.evaluation import attack_specs, diagnostics

COLUMNS = ("model", "defense", "size", "size_pixels", "dataset", "attack", "threat_model", "eps",
           "n", "accuracy", "source_model", "median_l2", "seconds")


def _eps_label(eps):
    if eps is None:
        return ""
    for denominator in (255,):
        numerator = eps * denominator
        if abs(numerator - round(numerator)) < 1e-6:
            return f" eps={int(round(numerator))}/{denominator}"
    return f" eps={eps:.4g}"


def markdown(records, warnings):
    models = list(dict.fromkeys(r["model"] for r in records))
    lines = ["# Robust accuracy", ""]
    clean = {r["model"]: r for r in records if r["attack"] == "none"}
    threats = list(dict.fromkeys(r["threat_model"] for r in records if r["attack"] != "none"))
    n_values = sorted({r["n"] for r in records})
    lines.append(f"Accuracy in % on {', '.join(map(str, n_values))} test images per model. "
                 "Each table is one threat model; the clean row is the same in all.")
    lines.append("")
    lines += ["| model | defense | size (as given) | size (px of the input) |",
              "| --- | --- | --- | ---: |"]
    for model in models:
        first = next(r for r in records if r["model"] == model)
        lines.append(f"| {model} | {first.get('defense', '-')} | {first.get('size') or '-'} | "
                     f"{first.get('size_pixels') or '-'} |")
    lines.append("")
    for threat in threats:
        lines.append(f"## Threat model: {threat}")
        lines.append("")
        lines.append("| attack | " + " | ".join(models) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in models) + " |")
        lines.append("| No attack | " + " | ".join(
            f"{100 * clean[m]['accuracy']:.2f}" if m in clean else "-" for m in models) + " |")
        rows = list(dict.fromkeys((r["attack"], r["eps"]) for r in records
                                  if r["threat_model"] == threat))
        for attack, eps in rows:
            cells = []
            for model in models:
                match = [r for r in records if r["model"] == model and r["threat_model"] == threat
                         and r["attack"] == attack and r["eps"] == eps]
                cells.append(f"{100 * match[0]['accuracy']:.2f}" if match else "-")
            label = attack_specs.label(attack) + _eps_label(
                eps if attack != "pgd-unbounded" else None)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        sources = sorted({f"{r['model']} <- {r['source_model']}" for r in records
                          if r["threat_model"] == threat and r.get("source_model")})
        if sources:
            lines.append("")
            lines.append("Transfer sources: " + "; ".join(sources))
        lines.append("")
    lines.append("## Gradient-masking checks")
    lines.append("")
    if warnings:
        lines += [f"- WARNING: {w}" for w in warnings]
    else:
        lines.append("No check violated: iterative attacks at least as strong as FGSM, accuracy "
                     "non-increasing in eps, unbounded PGD near 0 %, transfer not stronger than "
                     "white-box, Square (no gradients) not stronger than the gradient attacks, "
                     "no input with a zero gradient, EOT for models random at inference (where "
                     "measured).")
    lines.append("")
    lines.append("## How it was measured")
    lines.append("")
    params = {}
    for record in records:
        if record["attack"] not in ("none", "worst-case"):
            params.setdefault(record["attack"], record["params"])
    for attack, values in params.items():
        lines.append(f"- {attack_specs.label(attack)}: " + (", ".join(
            f"{k}={_value(v)}" for k, v in values.items()) or "one step"))
    lines.append("- Worst case over all attacks: per image, correct under every bounded attack "
                 "that ran at that eps (C&W-L2 is unbounded and reported apart)")
    return "\n".join(lines) + "\n"


def _value(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def to_csv(records, columns=COLUMNS):
    """CSV text of `records` (dicts), one column per name in `columns`; missing keys are empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({k: record.get(k) for k in columns})
    return buffer.getvalue()


def figures(records, out_dir):
    written = []
    curves = {}
    for r in records:
        if r["eps"] is not None and r["attack"] not in ("pgd-unbounded",):
            curves.setdefault(r["threat_model"], {}).setdefault(
                f"{r['model']} {r['attack']}", []).append((r["eps"], r["accuracy"]))
    for threat, series in curves.items():
        if any(len(points) > 1 for points in series.values()):
            path = os.path.join(out_dir, f"accuracy_vs_eps_{threat}.png")
            plots.line_plot(series, path, "eps (L-inf)", "accuracy", f"threat model: {threat}")
            written.append(path)
    # accuracy against size when the models differ only in size
    sized = [r for r in records if r.get("size_pixels") is not None]
    groups = {}
    for r in sized:
        groups.setdefault((r["dataset"], r["defense"], r["threat_model"], r["attack"], r["eps"]),
                          []).append((r["size_pixels"], r["accuracy"]))
    series = {f"{k[1]} {k[2]} {k[3]}{_eps_label(k[4])}": v for k, v in groups.items()
              if len({s for s, _ in v}) > 1}
    if series:
        path = os.path.join(out_dir, "accuracy_vs_size.png")
        plots.line_plot(series, path, "size (pixels of the model input)", "accuracy",
                        "accuracy against FM/FP size")
        written.append(path)
    return written


def write(records, out_dir, command=None):
    """Writes all outputs; returns (paths written, warnings)."""
    warnings = diagnostics.check(records)
    os.makedirs(out_dir, exist_ok=True)
    payload = {"records": records, "warnings": warnings, "command": command,
               "versions": provenance.versions(), "machine": provenance.machine()}
    paths = []
    for name, content in (("results.csv", to_csv(records)),
                          ("results.md", markdown(records, warnings))):
        atomic.write_text(os.path.join(out_dir, name), content)
        paths.append(os.path.join(out_dir, name))
    paths += figures(records, out_dir)
    # results.json last: its presence means the evaluation is complete
    atomic.write_json(os.path.join(out_dir, "results.json"), payload)
    paths.append(os.path.join(out_dir, "results.json"))
    return paths, warnings
