"""Reproduction reports: per table `report.md`, `cells.csv`, `results.json` and a figure.

Every cell carries the paper's value, ours under the paper's protocol (our reading of its threat
model), ours white-box, and both differences; cells whose data is absent say so.
"""
import os

from fmfp_tf import atomic, plots, provenance
from fmfp_tf import sizes as fmfp_sizes
from fmfp_tf.evaluation import diagnostics
from fmfp_tf.evaluation.attack_specs import label as attack_label
from fmfp_tf.evaluation.report import to_csv

CELL_COLUMNS = ("table", "column", "dataset", "model", "defense", "size", "size_pixels", "attack",
                "paper_pct", "protocol", "protocol_pct", "white_box_pct", "delta_protocol",
                "delta_white_box", "control_pct", "gain_over_control", "n", "status", "run")


def _pct(value):
    return "-" if value is None else f"{value:.2f}"


def _signed(value):
    # a difference that rounds to zero is written +0.00, never -0.00
    return f"{0.0 if abs(value) < 0.005 else value:+.2f}"


def _group_label(cell):
    if cell["size"] is None:
        return cell["column"]
    if fmfp_sizes.parse(cell["size"]).unit == "px":  # its pixels are its name
        return f"{cell['column']} z={cell['size']}"
    return f"{cell['column']} z={cell['size']} ({cell['size_pixels']} px)"


def markdown(spec, cells, warnings, seconds):
    """report.md of one table: the grid of cells, the differences from the paper, what the
    defense adds over the control, the masking checks and the settings."""
    protocol = spec.protocol
    lines = [f"# Table {spec.table}: {spec.title}", ""]
    lines.append(f"Mode: {'quick (smoke-level: tiny training, few images)' if spec.quick else 'full'}"
                 f"; wall time {seconds:.0f} s (training included unless cached); config "
                 f"`{os.path.basename(spec.path)}`.")
    lines.append("")
    if spec.notes:
        lines += [spec.notes, ""]
    lines.append(f"Each cell: **paper** / ours under the paper's protocol (**{protocol}**) / ours "
                 "**white-box**, accuracy in %. Protocol reading: "
                 + ("the undefended model attacked directly (white-box is the protocol)."
                    if protocol == "white-box" else
                    "attacks crafted on the undefended twin (same dataset, model, seed and "
                    "training) and transferred to the defended model; white-box attacks the "
                    "defended model itself, with FM/FP inactive as at inference."))
    lines.append("")
    lines += _grid(cells)
    lines += _differences(cells, protocol)
    lines += _over_control(spec, cells)
    lines += ["", "## Gradient-masking checks", ""]
    lines += [f"- WARNING: {w}" for w in warnings] or ["No check violated."]
    lines += ["", "## Settings", "",
              f"- attacks: {', '.join(spec.attacks)}; L-inf eps {spec.eps} (C&W-L2 is unbounded)",
              f"- strongest, white-box only: {', '.join(spec.strongest) or 'none'}; the worst "
              "case is per image over every L-inf attack that ran under that threat model (the "
              "transferred ones under the protocol; C&W-L2 is not in it)",
              f"- evaluation: {spec.evaluation}",
              f"- training (all columns): {spec.train}",
              f"- per dataset: {spec.datasets}"]
    if spec.sizes != [None]:
        lines.append("- z: a bare number is a percent of the shorter image side (the paper's z), "
                     "'Npx' pixels of the model input; each cell names both")
    return "\n".join(lines) + "\n"




def _grid(cells):
    lines = []
    groups = list(dict.fromkeys(_group_label(c) for c in cells))
    attacks = list(dict.fromkeys(c["attack"] for c in cells))
    index = {(_group_label(c), c["attack"]): c for c in cells}
    lines.append("| attack | " + " | ".join(groups) + " |")
    lines.append("| --- | " + " | ".join("---" for _ in groups) + " |")
    for attack in attacks:
        row = []
        for group in groups:
            cell = index.get((group, attack))
            if cell is None:
                row.append("")
            elif cell["status"] != "ok":
                row.append(f"{_pct(cell['paper_pct'])} / {cell['status']}")
            else:
                row.append(f"{_pct(cell['paper_pct'])} / {_pct(cell['protocol_pct'])} / "
                           f"{_pct(cell['white_box_pct'])}")
        lines.append(f"| {attack_label(attack)} | " + " | ".join(row) + " |")
    return lines


def _differences(cells, protocol):
    lines = []
    lines += ["", "## Differences (ours - paper, percentage points)", "",
              f"| model | attack | paper | ours ({protocol}) | diff | ours (white-box) | diff | "
              "n |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for cell in cells:
        if cell["status"] != "ok":
            lines.append(f"| {_group_label(cell)} | {attack_label(cell['attack'])} | "
                         f"{_pct(cell['paper_pct'])} | {cell['status']} | | | | |")
            continue
        lines.append(
            f"| {_group_label(cell)} | {attack_label(cell['attack'])} | "
            f"{_pct(cell['paper_pct'])} | {_pct(cell['protocol_pct'])} | "
            f"{'' if cell['delta_protocol'] is None else format(cell['delta_protocol'], '+.2f')} | "
            f"{_pct(cell['white_box_pct'])} | "
            f"{'' if cell['delta_white_box'] is None else format(cell['delta_white_box'], '+.2f')}"
            f" | {cell['n']} |")
    return lines


def _over_control(spec, cells):
    lines = []
    controlled = [c for c in cells if c["status"] == "ok" and c.get("control_pct") is not None]
    if controlled:
        lines += ["", "## What the defense adds under the transfer protocol", "",
                  "The control is the same architecture, undefended, trained with the next seed "
                  "and attacked with the same examples transferred from the twin: a second model "
                  "resists transfer to some degree without any defense. Defended - control is "
                  f"what the defense ({spec.defense}) adds under the paper's protocol "
                  "(percentage points; the clean row compares clean accuracies).", "",
                  "| model | attack | defended (transfer) | control (transfer) | "
                  "defended - control |", "| --- | --- | ---: | ---: | ---: |"]
        for cell in controlled:
            lines.append(f"| {_group_label(cell)} | {attack_label(cell['attack'])} | "
                         f"{_pct(cell['protocol_pct'])} | {_pct(cell['control_pct'])} | "
                         f"{_signed(cell['gain_over_control'])} |")
    return lines


def figure(spec, cells, path):
    panels = {}
    for cell in cells:
        bars = panels.setdefault(attack_label(cell["attack"]), {}) \
            .setdefault(_group_label(cell), {})
        bars["paper"] = cell["paper_pct"]
        bars[f"ours ({spec.protocol})"] = cell["protocol_pct"]
        bars["ours (white-box)"] = cell["white_box_pct"]
    plots.grouped_bars(panels, path, "accuracy (%)", f"Table {spec.table}: {spec.title}")


def render_table(spec, cells, records, out_dir, seconds):
    """Writes what is derived from a table's results (report.md, cells.csv, figure.png), also
    for a table read back, so a report follows the current report code; returns the
    gradient-masking warnings."""
    os.makedirs(out_dir, exist_ok=True)
    warnings = diagnostics.check(records)
    atomic.write_text(os.path.join(out_dir, "report.md"), markdown(spec, cells, warnings, seconds))
    atomic.write_text(os.path.join(out_dir, "cells.csv"), to_csv(cells, CELL_COLUMNS))
    figure(spec, cells, os.path.join(out_dir, "figure.png"))
    return warnings


def write_table(spec, cells, records, out_dir, seconds, digest=None):
    """Writes report.md, cells.csv, figure.png and, last, results.json (its presence = complete;
    `digest`, the table file and data it came from, lets a later run reuse it)."""
    warnings = render_table(spec, cells, records, out_dir, seconds)
    atomic.write_json(os.path.join(out_dir, "results.json"), {
        "table": spec.table, "title": spec.title, "quick": spec.quick, "seconds": seconds,
        "digest": digest,
        "config": os.path.basename(spec.path), "cells": cells, "records": records,
        "warnings": warnings, "versions": provenance.versions(),
        "machine": provenance.machine()})
    return out_dir


def write_index(summary, out_dir, quick, models=()):
    lines = [f"# Reproduction ({'quick' if quick else 'full'})", "",
             "| table | title | wall time (s) | cells | not run |",
             "| --- | --- | ---: | ---: | ---: |"]
    for row in summary:
        lines.append(f"| [{row['table']}](table{row['table']}/report.md) | {row['title']} | "
                     f"{row['seconds']:.0f} | {row['cells']} | {row['not_run']} |")
    lines.append("")
    lines.append(f"Total: {sum(r['seconds'] for r in summary):.0f} s")
    if models:
        lines += ["", "## Models", "",
                  "Clean accuracy of every model on its whole test set (the tables' clean rows "
                  "use the evaluated images only), beside the paper's clean accuracy of its "
                  "cell; training s is the sum of its epochs as the run recorded them "
                  "(metrics.json history, over every piece of a resumed run; data loading and "
                  "cw-at's C&W crafting not included), also for a model that this run found in "
                  "the cache.", "",
                  "| model | role | clean % | test images | paper % | epochs | precision | "
                  "training s |", "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
        for row in models:
            lines.append(f"| {row['run']} | {row['role']} | {row['test_accuracy_pct']:.2f} | "
                         f"{row['test_images']} | {_pct(row['paper_pct'])} | {row['epochs']} | "
                         f"{row['precision']} | {row['train_seconds']} |")
        atomic.write_text(os.path.join(out_dir, "models.csv"), to_csv(
            list(models), ("run", "role", "test_accuracy_pct", "test_images", "paper_pct",
                           "epochs", "precision", "train_seconds")))
    path = os.path.join(out_dir, "README.md")
    atomic.write_text(path, "\n".join(lines) + "\n")
    return [path] + [os.path.join(out_dir, f"table{r['table']}", "report.md") for r in summary]
