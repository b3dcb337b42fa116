"""Writing evaluation results: results.json, results.csv, results.md and plots, all atomic.

Every accuracy is given with its 95 % Wilson score interval on its n test images (Wilson 1927):
at n = 100 an accuracy near 50 % is +-10 points, which a reader must see beside the number.
"""
import csv
import io
import math
import os

from fmfp_tf import atomic, plots, provenance
from fmfp_tf.evaluation import attack_specs, diagnostics

COLUMNS = ("model", "defense", "size", "size_pixels", "dataset", "attack", "threat_model", "eps",
           "n", "skip", "accuracy", "ci95_low", "ci95_high", "source_model", "median_l2",
           "seconds", "forward_passes", "backward_passes")


def wilson_interval(accuracy, n, z=1.959964):
    """(low, high) of the 95 % Wilson score interval of a proportion measured on n images."""
    if not n:
        return (0.0, 1.0)
    centre = accuracy + z * z / (2 * n)
    spread = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n))
    return (max(0.0, (centre - spread) / (1 + z * z / n)),
            min(1.0, (centre + spread) / (1 + z * z / n)))


def _percent(record):
    """'48.00 [41.2, 54.9]': the accuracy and its 95 % interval, in %."""
    low, high = wilson_interval(record["accuracy"], record["n"])
    return f"{100 * record['accuracy']:.2f} [{100 * low:.1f}, {100 * high:.1f}]"


def with_intervals(records):
    """The records with `ci95_low` / `ci95_high` added (what results.csv and .json carry)."""
    out = []
    for record in records:
        low, high = wilson_interval(record["accuracy"], record["n"])
        out.append({**record, "ci95_low": round(low, 4), "ci95_high": round(high, 4)})
    return out


def _flat(record):
    """A record with its counted passes as two columns (results.csv)."""
    passes = record.get("passes") or {}
    return {**record, "forward_passes": passes.get("forward"),
            "backward_passes": passes.get("backward")}


def format_eps(eps):
    """A budget as users write it: '8/255' when it is a whole number of 255ths, else '0.0314'."""
    if eps == 1.0:
        return "1"  # the unbounded check: the whole pixel range
    numerator = eps * 255
    if abs(numerator - round(numerator)) < 1e-6:
        return f"{int(round(numerator))}/255"
    return f"{eps:.4g}"


def _eps_label(eps):
    return "" if eps is None else f" eps={format_eps(eps)}"


def markdown(records, warnings):
    """results.md: the models, one table per threat model, the masking checks, the settings."""
    models = list(dict.fromkeys(r["model"] for r in records))
    threats = list(dict.fromkeys(r["threat_model"] for r in records if r["attack"] != "none"))
    n_values = sorted({r["n"] for r in records})
    skips = sorted({r.get("skip") or 0 for r in records})
    # a shard: which images of the seeded sample, so shards are not mistaken for one another
    shard = "" if skips == [0] else (
        f" (a shard: the seeded test sample's images after the first {', '.join(map(str, skips))})")
    lines = ["# Robust accuracy", "",
             f"Accuracy in % on {', '.join(map(str, n_values))} test images per model{shard}, "
             "with its 95 % Wilson interval in brackets. Each table is one threat model; the "
             "clean row is the same in all.", "",
             "| model | defense | size (as given) | size (px of the input) |",
             "| --- | --- | --- | ---: |"]
    for model in models:
        first = next(r for r in records if r["model"] == model)
        lines.append(f"| {model} | {first.get('defense', '-')} | {first.get('size') or '-'} | "
                     f"{first.get('size_pixels') or '-'} |")
    lines.append("")
    for threat in threats:
        lines += _threat_table(records, models, threat)
    return "\n".join(lines + _cost_lines(records, models) + _masking_lines(warnings)
                     + _settings_lines(records)) + "\n"


def _count(value):
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value:,}"


def _cost_lines(records, models):
    """The counted passes of every cell: forward / backward passes over single images, the
    machine-independent cost (A3's unit), beside the seconds each took on this machine."""
    rows = list(dict.fromkeys((r["threat_model"], r["attack"], r["eps"]) for r in records
                              if r.get("passes")))
    if not rows:
        return []
    lines = ["## Cost", "",
             "Forward / backward passes of single images that each cell ran (counted), and its "
             "seconds here.", "",
             "| threat model | attack | " + " | ".join(models) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in models) + " |"]
    for threat, attack, eps in rows:
        cells = []
        for model in models:
            match = [r for r in records if r["model"] == model and r.get("passes")
                     and (r["threat_model"], r["attack"], r["eps"]) == (threat, attack, eps)]
            cells.append("-" if not match else (
                f"{_count(match[0]['passes']['forward'])} / "
                f"{_count(match[0]['passes']['backward'])}"
                + (f" ({match[0]['seconds']:.0f} s)" if match[0].get("seconds") else "")))
        label = attack_specs.label(attack) + _eps_label(eps if attack != "pgd-unbounded" else None)
        lines.append(f"| {threat} | {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def _threat_table(records, models, threat):
    clean = {r["model"]: r for r in records if r["attack"] == "none"}
    lines = [f"## Threat model: {threat}", "",
             "| attack | " + " | ".join(models) + " |",
             "| --- | " + " | ".join("---:" for _ in models) + " |",
             "| No attack | " + " | ".join(
                 _percent(clean[m]) if m in clean else "-" for m in models) + " |"]
    rows = list(dict.fromkeys((r["attack"], r["eps"]) for r in records
                              if r["threat_model"] == threat))
    for attack, eps in rows:
        cells = []
        for model in models:
            match = [r for r in records if r["model"] == model and r["threat_model"] == threat
                     and r["attack"] == attack and r["eps"] == eps]
            cells.append(_percent(match[0]) if match else "-")
        label = attack_specs.label(attack) + _eps_label(
            eps if attack != "pgd-unbounded" else None)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += _component_rows(records, models, threat, attack, eps)
    sources = sorted({f"{r['model']} <- {r['source_model']}" for r in records
                      if r["threat_model"] == threat and r.get("source_model")})
    if sources:
        lines += ["", "Transfer sources: " + "; ".join(sources)]
    return lines + [""]


def _component_rows(records, models, threat, attack, eps):
    """An ensemble's rows, attack by attack: the share still robust after each of its attacks
    (what AutoAttack's log prints), on the images of its own row."""
    found = {}
    for record in records:
        if (record["threat_model"], record["attack"], record["eps"]) == (threat, attack, eps):
            found[record["model"]] = record
    names = list(dict.fromkeys(name for r in found.values() for name in r.get("components", {})))
    lines = []
    for name in names:
        cells = ["-" if name not in found.get(m, {}).get("components", {}) else _percent(
            {"accuracy": found[m]["components"][name], "n": found[m]["n"]}) for m in models]
        lines.append(f"| &nbsp;&nbsp;after {attack_specs.label(name)} | " + " | ".join(cells)
                     + " |")
    return lines


def _masking_lines(warnings):
    lines = ["## Gradient-masking checks", ""]
    if warnings:
        lines += [f"- WARNING: {w}" for w in warnings]
    else:
        lines.append("No check violated: iterative attacks at least as strong as FGSM, accuracy "
                     "non-increasing in eps, unbounded PGD near 0 %, transfer not stronger than "
                     "white-box, Square (no gradients) not stronger than the gradient attacks, "
                     "no input with a zero gradient, EOT for models random at inference (where "
                     "measured).")
    return lines + [""]


def _settings_lines(records):
    lines = ["## How it was measured", ""]
    params = {}
    for record in records:
        if record["attack"] not in ("none", "worst-case"):
            params.setdefault(record["attack"], record["params"])
    for attack, values in params.items():
        lines.append(f"- {attack_specs.label(attack)}: " + (", ".join(
            f"{k}={_value(v)}" for k, v in values.items()) or "one step")
            + _components(attack, values))
    lines.append("- Worst case over all attacks: per image, correct under every bounded attack "
                 "that ran at that eps (C&W-L2 is unbounded and reported apart)")
    return lines


def _components(attack, params):
    """The ensemble's components as they ran, named exactly."""
    if attack == "autoattack":
        from fmfp_tf.attacks.autoattack import plan

        stages = plan(params.get("version", "standard"))
    elif attack == "autoattack-fast":
        from fmfp_tf.attacks.fast_autoattack import plan

        stages = plan(eot_draws=1 if params.get("randomized") else None)
        return ("; stages, in order: " + ", ".join(attack_specs.label(name) for name, _, _ in
                                                  stages)
                + (" (Square on every image left: the model is random at inference)"
                   if params.get("randomized") else
                   " (Square only on images whose gradient is zero or not finite)"))
    else:
        return ""
    names = [attack_specs.label(name) for name, _, _ in stages]
    return f"; components, in order: {', '.join(names)}"


def _value(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def to_csv(records, columns=COLUMNS):
    """CSV text of `records` (dicts), one column per name in `columns`; missing keys are empty."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for record in records:
        record = _flat(record)
        writer.writerow({k: record.get(k) for k in columns})
    return buffer.getvalue()


def figures(records, out_dir):
    """The accuracy figures, each value with its 95 % interval and each model's clean accuracy
    beside its attacks (a bar, or a dotted line over eps)."""
    written = []
    curves = {}
    clean = {r["model"]: r for r in records if r["attack"] == "none"}
    for r in records:
        if r["eps"] is not None and r["attack"] not in ("pgd-unbounded",):
            curves.setdefault(r["threat_model"], {}).setdefault(
                f"{r['model']} {r['attack']}", []).append(
                    (r["eps"], r["accuracy"], *wilson_interval(r["accuracy"], r.get("n") or 0)))
    for threat, series in curves.items():
        path = os.path.join(out_dir, f"accuracy_vs_eps_{threat}.png")
        if any(len(points) > 1 for points in series.values()):
            for model in {label.rsplit(" ", 1)[0] for label in series}:
                if model in clean:  # clean accuracy: eps 0 of every curve of that model
                    record = clean[model]
                    for label in [k for k in series if k.rsplit(" ", 1)[0] == model]:
                        series[label] = [(0.0, record["accuracy"], *wilson_interval(
                            record["accuracy"], record.get("n") or 0))] + series[label]
            plots.line_plot(series, path, "eps (L-inf)", "accuracy", f"threat model: {threat}")
        else:
            # one eps: bars per attack, grouped by model, instead of one-point curves, the clean
            # accuracy first
            groups = {}
            for label, points in series.items():
                model, attack = label.rsplit(" ", 1)
                bars = groups.setdefault(model, {})
                if not bars and model in clean:
                    record = clean[model]
                    bars["clean"] = tuple(100 * v for v in (record["accuracy"], *wilson_interval(
                        record["accuracy"], record.get("n") or 0)))
                bars[attack_specs.label(attack)] = tuple(100 * v for v in points[0][1:])
            path = os.path.join(out_dir, f"accuracy_{threat}.png")
            eps = next(iter(series.values()))[0][0]
            plots.grouped_bars({f"threat model: {threat},{_eps_label(eps)}": groups}, path,
                               "accuracy (%)")
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
    quoted = with_intervals(records)
    payload = {"records": quoted, "warnings": warnings, "command": command,
               "versions": provenance.versions(), "machine": provenance.machine()}
    paths = []
    for name, content in (("results.csv", to_csv(quoted)),
                          ("results.md", markdown(records, warnings))):
        atomic.write_text(os.path.join(out_dir, name), content)
        paths.append(os.path.join(out_dir, name))
    paths += figures(records, out_dir)
    # results.json last: its presence means the evaluation is complete
    atomic.write_json(os.path.join(out_dir, "results.json"), payload)
    paths.append(os.path.join(out_dir, "results.json"))
    return paths, warnings
