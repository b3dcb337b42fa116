"""`reproduce`: train what a paper table needs (cached by config fingerprint), evaluate, report.

Trained models live in a cache directory, one run directory per resolved `TrainConfig` named
`<run name>-<fingerprint>`: a re-run, and every other table that needs the same model (the
undefended twins of tables 3 to 6), reuses it; a run interrupted mid-training is resumed from its
checkpoint. Adversarial examples are kept by the model that crafted them, so the examples
transferred from one undefended twin to all its defended models are crafted once. A table that an
earlier run completed with the same table file, data and models is read back, not evaluated
again: a full run made in pieces evaluates each table once.
"""
import dataclasses
import hashlib
import json
import logging
import os
import time

from fmfp_tf import runs
from fmfp_tf import sizes as fmfp_sizes
from fmfp_tf.config import TrainConfig
from fmfp_tf.data import registry as datasets
from fmfp_tf.errors import UsageError
from fmfp_tf.evaluation.request import Budget, EvaluationRequest
from fmfp_tf.evaluation.robustness import evaluate, load_entry
from fmfp_tf.reproduction import paper_numbers, report, table_spec

logger = logging.getLogger(__name__)



def _directory_names():
    """{dataset: sub-folders of a data root (such as ../shared/data) that may hold it}."""
    return {name: datasets.get(name).directory_names for name in datasets.names()
            if datasets.get(name).directory_names}


def resolve_data_dirs(data_root=None, explicit=None):
    """{dataset: directory} from `data_root`'s usual sub-folders, overridden by `explicit`."""
    explicit = dict(explicit or {})
    directory_names = _directory_names()
    for dataset, path in explicit.items():
        if dataset not in datasets.names() or not datasets.get(dataset).needs_data_dir:
            raise UsageError(f"data_dirs: {dataset}={path}: unknown dataset; expected one of "
                             f"{', '.join(directory_names)}", {"data_dirs:": "data_dirs"})
        if not os.path.isdir(path):
            raise UsageError(f"data_dirs: {dataset}={path}: not a directory",
                             {"data_dirs:": "data_dirs"})
    if data_root is not None and not os.path.isdir(data_root):
        raise UsageError(f"data_root {data_root}: not a directory", {"data_root": "data_root"})
    found = {}
    for dataset, names in directory_names.items():
        if dataset in explicit:
            found[dataset] = explicit[dataset]
            continue
        for name in names if data_root else ():
            if os.path.isdir(os.path.join(data_root, name)):
                found[dataset] = os.path.join(data_root, name)
                break
    return found


def ensure_trained(config, models_dir, log, twin_dir=None):
    """The run directory of `config` in the cache, training (or resuming) it when needed."""
    from fmfp_tf.training.run import train_cached

    run_dir = runs.cache_entry(config, models_dir)
    if runs.is_complete(run_dir):
        runs.check_cache_entry(config, run_dir)
        log(f"  cached: {os.path.basename(run_dir)}")
        return run_dir
    log(f"  {'resuming' if runs.is_started(run_dir) else 'training'}: "
        f"{os.path.basename(run_dir)}")
    started = time.time()
    import keras

    keras.backend.clear_session()
    run_dir, metrics = train_cached(config, models_dir, verbose=0, twin_dir=twin_dir)
    log(f"  trained {os.path.basename(run_dir)}: test accuracy {metrics['test_accuracy']:.4f} "
        f"({time.time() - started:.0f} s)")
    return run_dir


def column_config(spec, column, data_dir, defense, size):
    values = spec.train_settings(column.dataset, column.model)
    return TrainConfig(dataset=column.dataset, data_dir=data_dir, model=column.model,
                       defense=defense, size=size, **values)


def _cell(spec, column, size, attack, status, **values):
    paper = paper_numbers.lookup(spec.table, column.paper_dataset, column.model, attack,
                                 spec.paper_z(size))
    if paper is None and size is not None:  # a table whose paper cells give no size (table 6)
        paper = paper_numbers.lookup(spec.table, column.paper_dataset, column.model, attack)
    cell = {"table": spec.table, "column": column.label, "dataset": column.dataset,
            "paper_dataset": column.paper_dataset, "model": column.model,
            "defense": spec.defense, "size": size,
            "size_pixels": None if size is None else fmfp_sizes.parse(size).pixels(
                min(spec.train_settings(column.dataset, column.model).get("image_size", (32, 32)))),
            "attack": attack, "paper_pct": paper, "protocol": spec.protocol
            if attack != "none" else "clean", "protocol_pct": None, "white_box_pct": None,
            "delta_protocol": None, "delta_white_box": None, "control_pct": None,
            "gain_over_control": None, "n": None, "status": status,
            "run": None}
    cell.update(values)
    if paper is not None:
        for key, delta in (("protocol_pct", "delta_protocol"), ("white_box_pct",
                                                                "delta_white_box")):
            if cell[key] is not None:
                cell[delta] = round(cell[key] - paper, 2)
    return cell


def table_digest(spec, data_dirs):
    """What a table's results depend on besides its models (whose names carry their
    fingerprints): the resolved table file and the data directories of its datasets."""
    used = sorted({column.dataset for column in spec.columns})
    data = {"spec": {k: v for k, v in dataclasses.asdict(spec).items() if k != "path"},
            "data": {name: data_dirs.get(name) and os.path.realpath(data_dirs[name])
                     for name in used}}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _finished_table(spec, out_dir, models_dir, data_dirs):
    """(cells, records, seconds) of a table that an earlier run completed with the same table
    file, data and models, so that a full run made in pieces evaluates each table once; else
    None."""
    path = os.path.join(out_dir, f"table{spec.table}", "results.json")
    try:
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
    except (OSError, ValueError):
        return None
    if results.get("digest") != table_digest(spec, data_dirs):
        return None
    if not all(runs.is_complete(os.path.join(models_dir, c["run"]))
               for c in results["cells"] if c.get("run")):
        return None
    return results["cells"], results["records"], results["seconds"]


def run_table(spec, out_dir, models_dir, data_dirs, crafted=None, log=None):
    """Trains and evaluates one table; writes its report; returns (cells, records, seconds)."""
    log = log or logger.info
    started = time.time()
    crafted = {} if crafted is None else crafted
    settings = spec.attack_settings()
    eps = Budget.of(spec.eps)  # the table's budget, read once
    cells, records = [], []
    # the paper's attacks, the strongest attack (white-box only), then the per-image worst case
    rows = ["none"] + spec.attacks + spec.strongest + ["worst-case"]
    for column in spec.columns:
        data_dir = data_dirs.get(column.dataset)
        sizes = spec.sizes  # [None] for a defense without a size
        if data_dir is None and datasets.get(column.dataset).needs_data_dir:
            log(f"table {spec.table} {column.label}: not run, data absent")
            cells += [_cell(spec, column, size, attack, "not run: data absent")
                      for size in sizes for attack in rows]
            continue
        log(f"table {spec.table} {column.label}")
        twin_config = column_config(spec, column, data_dir, "none", None)
        twin_dir = ensure_trained(twin_config, models_dir, log)
        source = load_entry(twin_dir)
        control = {}
        if spec.protocol == "transfer" and spec.defense != "none":
            control, control_records = _control(spec, column, twin_config, source, models_dir,
                                                eps, settings, log, crafted)
            records += control_records
        for size in sizes:
            if spec.defense == "none":
                run_dir, entry = twin_dir, source
            else:
                config = column_config(spec, column, data_dir, spec.defense, size)
                run_dir = ensure_trained(config, models_dir, log, twin_dir=twin_dir)
                entry = load_entry(run_dir)
            threats = ["white-box"]
            if spec.protocol == "transfer" and spec.defense != "none":
                threats.append("transfer")
            request = EvaluationRequest.build(spec.attacks, [eps], threats, spec.n,
                                              white_box_attacks=spec.strongest,
                                              settings=settings)
            found = evaluate([entry], request=request, source=source, log=log, crafted=crafted)
            for record in found:
                record["table"] = spec.table
                record["column"] = column.label
                record["paper_size"] = size
            records += found
            cells += _cells_of(spec, column, size, rows, found, control, run_dir)
    seconds = time.time() - started
    report.write_table(spec, cells, records, os.path.join(out_dir, f"table{spec.table}"),
                       seconds, digest=table_digest(spec, data_dirs))
    return cells, records, seconds


def _cells_of(spec, column, size, rows, found, control, run_dir):
    """One cell per row (attack) of a column and size, from that model's records."""
    by_key = {(r["attack"], r["threat_model"]): r for r in found}
    cells = []
    for attack in rows:
        if attack == "none":
            clean = 100 * by_key[("none", "none")]["accuracy"]
            protocol_pct = white_box_pct = clean
        else:
            # a white-box-only attack has no number under a transfer protocol
            protocol_record = by_key.get((attack, spec.protocol)) or (
                by_key.get((attack, "white-box")) if attack not in spec.strongest else None)
            protocol_pct = None if protocol_record is None else 100 * protocol_record["accuracy"]
            white_box_pct = 100 * by_key[(attack, "white-box")]["accuracy"]
        control_pct = control.get(attack)
        cells.append(_cell(spec, column, size, attack, "ok",
                           protocol_pct=None if protocol_pct is None else round(protocol_pct, 2),
                           white_box_pct=round(white_box_pct, 2), control_pct=control_pct,
                           gain_over_control=None if None in (control_pct, protocol_pct)
                           else round(protocol_pct - control_pct, 2),
                           n=found[0]["n"], run=os.path.basename(run_dir)))
    return cells


def _control(spec, column, twin_config, source, models_dir, eps, settings, log, crafted):
    """The transfer protocol's control: the same architecture, undefended, another seed,
    attacked with the examples transferred from the twin. Any second model resists transferred
    examples to some degree; the defended model's transfer accuracy minus the control's is what
    the defense adds under the paper's protocol. Returns ({attack: accuracy %}, records)."""
    config = twin_config.replace(seed=twin_config.seed + 1)
    entry = load_entry(ensure_trained(config, models_dir, log))
    request = EvaluationRequest.build(spec.attacks, [eps], ["transfer"], spec.n,
                                      settings=settings)
    found = evaluate([entry], request=request, source=source, log=log, crafted=crafted)
    accuracy = {"none": round(100 * found[0]["accuracy"], 2)}
    for record in found:
        record.update(table=spec.table, column=column.label, paper_size=None, role="control")
        if record["threat_model"] == "transfer":
            accuracy[record["attack"]] = round(100 * record["accuracy"], 2)
    return accuracy, found


def _training_seconds(metrics):
    """The sum of a run's epochs over all its processes: a run resumed in a later piece has a
    wall_seconds of its last process only, while its history keeps every epoch."""
    history = metrics.get("history") or []
    if history and all("seconds" in epoch for epoch in history):
        return round(sum(epoch["seconds"] for epoch in history))
    return round(metrics.get("wall_seconds", 0))


def reproduce(tables, out_dir, quick=False, data_root=None, data_dirs=None, models_dir=None,
              log=None):
    """Runs each named table (table3..table6, 'all', or YAML paths); returns the report paths.
    `log`: where progress goes (default: the `fmfp_tf` logger, at INFO)."""
    log = log or logger.info
    names = list(table_spec.TABLES) if "all" in tables else list(tables)
    if not names:
        raise UsageError("name a table: table3, table4, table5, table6 or all")
    # parse every table before the first training, so a typo fails in seconds, not in an hour
    specs = [table_spec.load(name, quick=quick) for name in names]
    dirs = resolve_data_dirs(data_root, data_dirs)
    models_dir = models_dir or os.path.join(out_dir, "models")
    os.makedirs(models_dir, exist_ok=True)
    crafted = {}
    summary = []
    models = {}
    for spec in specs:
        log(f"== table {spec.table}: {spec.title} ({'quick' if quick else 'full'})")
        done = _finished_table(spec, out_dir, models_dir, dirs)
        if done is not None:
            cells, records, seconds = done
            report.render_table(spec, cells, records,
                                os.path.join(out_dir, f"table{spec.table}"), seconds)
            log(f"== table {spec.table}: complete in {out_dir}/table{spec.table} (the same table "
                "file, data and models); delete its results.json to evaluate it again")
        else:
            cells, records, seconds = run_table(spec, out_dir, models_dir, dirs, crafted, log)
        summary.append({"table": spec.table, "title": spec.title, "seconds": round(seconds, 1),
                        "cells": len(cells),
                        "not_run": sum(c["status"] != "ok" for c in cells)})
        _collect_models(models, spec, cells, records, models_dir)
        log(f"== table {spec.table} done in {seconds:.0f} s")
    return report.write_index(summary, out_dir, quick, list(models.values()))


def _collect_models(models, spec, cells, records, models_dir):
    """{run name: row} of every model the table evaluated (twins, controls, defended): its own
    test accuracy on the whole test set (metrics.json) beside the paper's clean accuracy of its
    cell (table 3's for undefended twins and controls), and its training time."""
    paper = {c["run"]: c["paper_pct"] for c in cells if c["attack"] == "none" and c["run"]}
    # the transfer source (the twin) appears in records only as source_model
    named = [(r["model"], r.get("role")) for r in records] + [
        (r["source_model"], "twin") for r in records if r.get("source_model")]
    for name, role in named:
        if name in models or not runs.is_complete(os.path.join(models_dir, name)):
            continue
        metrics = runs.read_metrics(os.path.join(models_dir, name))
        config = metrics["config"]
        clean_paper = paper.get(name)
        if clean_paper is None and config["defense"] == "none":
            # the column's name for the dataset in the paper, else the dataset itself (table 3
            # has no "faces" column: table 6's faces are ORL)
            names = [c.paper_dataset for c in spec.columns if (c.dataset, c.model) == (
                config["dataset"], config["model"])] + [config["dataset"]]
            clean_paper = next((value for value in (
                paper_numbers.lookup(3, name, config["model"], "none") for name in names)
                if value is not None), None)
        models[name] = {"run": name, "role": role or (
            "twin" if config["defense"] == "none" else "defended"),
            "test_accuracy_pct": round(100 * metrics["test_accuracy"], 2),
            "test_images": metrics["dataset"]["test_examples"], "paper_pct": clean_paper,
            "epochs": metrics["epochs"], "train_seconds": _training_seconds(metrics),
            "precision": (metrics.get("precision") or {}).get("used")}

