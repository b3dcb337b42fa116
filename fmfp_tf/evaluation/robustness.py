"""`evaluate`: robust accuracy of models under attacks, budgets and threat models.

Every record says what was measured: model, defense, size, dataset, attack, threat model, eps,
number of images, accuracy (a fraction), the source model for transfer, the attack's settings
and the seconds it took.
"""
import dataclasses
import hashlib
import json
import logging
import os
import threading
import time
import typing

import numpy as np

from fmfp_tf import attacks as attack_lib
from fmfp_tf import data, runs
from fmfp_tf.attacks import counting
from fmfp_tf.errors import DataError, Interrupted, ModelError, UsageError
from fmfp_tf.evaluation import attack_specs, cells, threat_models
from fmfp_tf.evaluation.attack_specs import AttackSettings
from fmfp_tf.evaluation.report import format_eps
from fmfp_tf.evaluation.request import EvaluationRequest
from fmfp_tf.models_io import check_compatible, load_model, resolve_model_path

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ModelEntry:
    """A loaded model and what its run directory says about it."""

    path: str
    model: object
    name: str
    dataset: str = None
    data_dir: str = None
    defense: str = "unknown"
    size: str = None  # as given: '20%' or '6px'
    size_pixels: int = None  # on the model input
    architecture: str = None
    seed: int = None
    image_size: tuple = None
    face_crop: str = "none"
    run_dir: str = None  # the run directory whose config.json describes the model
    data_dir_recorded: str = None  # set when the recorded data directory was found elsewhere


def unique_names(entries):
    """Gives entries whose folders share a name (`A/run`, `B/run`) the shortest path suffix that
    tells them apart (`A/run`, `B/run`), so records and report columns never mix two models."""
    paths = [os.path.normpath(os.path.abspath(entry.path)) for entry in entries]
    # the same file however named: a run folder and its model.keras, or through a link
    files = [os.path.realpath(_model_file(entry.path)) for entry in entries]
    if len(set(files)) != len(files):
        repeated = sorted({entry.path for entry, f in zip(entries, files) if files.count(f) > 1})
        raise UsageError(f"the same model is given twice: {', '.join(repeated)}")
    parts = [p.split(os.sep) for p in paths]
    depth = 1
    while len({os.sep.join(part[-depth:]) for part in parts}) < len(parts):
        depth += 1
    names = [entry.name for entry in entries]
    for entry, part in zip(entries, parts):
        if names.count(entry.name) > 1:
            entry.name = os.sep.join(part[-depth:]).removesuffix(".keras").removesuffix(
                os.sep + "model")
    return entries


def _model_file(path):
    try:
        return resolve_model_path(path)
    except Exception:  # noqa: BLE001 - an entry made by hand may name no file: its own path
        return path


def load_entry(path, unsafe=False):
    model = load_model(path, unsafe=unsafe)
    run_dir = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    entry = ModelEntry(path=path, model=model,
                       name=os.path.basename(os.path.normpath(run_dir if os.path.isdir(path)
                                                              else path)))
    if os.path.isfile(os.path.join(run_dir, "config.json")):
        parsed = runs.read_config(run_dir)
        entry.dataset, entry.data_dir = parsed.dataset, parsed.data_dir
        entry.defense, entry.size = parsed.defense, parsed.size
        entry.size_pixels = parsed.size_pixels
        entry.architecture, entry.seed = parsed.model, parsed.seed
        entry.image_size, entry.face_crop = parsed.image_size, parsed.face_crop_used
        entry.run_dir = run_dir
        if entry.data_dir and not os.path.isdir(entry.data_dir):
            # a run trained elsewhere records that machine's path: look beside the run
            moved = runs.moved_data_dir(run_dir, entry.data_dir)
            if moved:
                entry.data_dir_recorded, entry.data_dir = entry.data_dir, moved
    return entry


def find_twin(entry):
    """The undefended twin's run directory beside the entry's run (see `runs.find_twin`)."""
    return runs.find_twin(entry.run_dir) if entry.run_dir else None


def _dataset_of(entry, dataset=None, data_dir=None):
    """(dataset name, data directory) the model is evaluated on; errors say what to pass."""
    name = dataset or entry.dataset
    if name is None:
        raise UsageError(
            f"{entry.path}: no run config says which dataset it was trained on; pass dataset=NAME",
            {"dataset=NAME": "dataset"})
    if data_dir is None and entry.data_dir and not os.path.isdir(entry.data_dir):
        raise DataError(
            f"{entry.path}: its run config says it was trained on {name} from {entry.data_dir}, "
            "which is not a directory here; pass data_dir=DIR with the dataset's location")
    return name, data_dir or entry.data_dir


def test_images(entry, n, dataset=None, data_dir=None, seed=0, skip=0):
    """n test images (a seeded sample of the test split) and labels for this model: the
    seeded permutation's images skip+1 .. skip+n, so that evaluations with skip 0, n, 2n, ...
    cover disjoint shards of one sample (their union is the sample `n * shards` draws)."""
    name, data_dir = _dataset_of(entry, dataset, data_dir)
    arrays = data.load_arrays(name, data_dir, "test",
                              entry.image_size or (32, 32), face_crop=entry.face_crop)
    if skip >= len(arrays.labels):
        raise UsageError(f"skip={skip} leaves no test images: {name}'s test split has "
                         f"{len(arrays.labels)}")
    order = np.random.default_rng(seed).permutation(len(arrays.labels))[skip:skip + n]
    x = arrays.images[order].astype(np.float32) / 255.0
    return x, arrays.labels[order], len(arrays.class_names), name


def zero_gradient_share(model, x, y, batch_size=256):
    """Share of inputs whose cross-entropy gradient is exactly zero (AutoAttack's flag: such
    points give gradient attacks nothing to follow, a sign of masking or saturated logits)."""
    common = attack_lib.common
    zero = []
    for start in range(0, len(x), batch_size):
        part = slice(start, start + batch_size)
        grad, _ = common.loss_gradient(model, common.tensor(x[part]), common.tensor(y[part]))
        grad = common.numpy(grad)
        zero.append(np.all(grad.reshape(len(grad), -1) == 0, axis=1))
    return float(np.concatenate(zero).mean()) if zero else 0.0


def _twin_of(entry):
    """The entry's undefended twin's run directory; ModelError when there is none."""
    twin = find_twin(entry)
    if twin is None:
        raise ModelError(
            f"{entry.name}: no undefended twin (the same config with defense none: dataset, "
            "model, seed, epochs, data) beside it for the transfer threat model; pass "
            "source=MODEL, or train one with defense none", {"source=MODEL": "source"})
    return twin


def _transfer_source(entry, source, x, num_classes, dataset_name, log):
    """The model that crafts transfer examples for `entry`, or None when transfer is moot."""
    source_entry = source if source is not None else load_entry(_twin_of(entry))
    if os.path.abspath(source_entry.path) == os.path.abspath(entry.path):
        log(f"{entry.name}: transfer from itself is white-box; skipped")
        return None
    check_compatible(source_entry.model, x.shape[1:], num_classes, source_entry.name,
                     dataset_name)
    return source_entry


def _plan(attacks, eps_values, threat, settings):
    """(attack, eps) pairs: bounded attacks at every eps, unbounded ones once, then the check."""
    plan = [(a, e) for a in attacks if attack_specs.get(a).bounded for e in eps_values]
    plan += [(a, None) for a in attacks if not attack_specs.get(a).bounded]
    if settings.unbounded_check and threat == "white-box":
        plan.append(("pgd-unbounded", 1.0))
    return plan


def attacks_run(attacks, threats, settings):
    """The registry names an evaluation runs: `attacks` plus the checks its settings add."""
    return {attack for threat in threats for attack, _ in _plan(attacks, [None], threat, settings)}


def _worst_case(base, threat, correct, source_entry):
    """Per eps, the share of images that survive every bounded attack run at that eps."""
    records = []
    for eps, by_attack in correct.items():
        survive = np.logical_and.reduce([bits for bits, _ in by_attack.values()])
        record = {**base, "attack": "worst-case", "threat_model": threat, "eps": eps,
                  "accuracy": float(survive.mean()), "params": {"attacks": list(by_attack)},
                  "seconds": 0.0}
        spent = [passes for _, passes in by_attack.values()]
        if all(passes is not None for passes in spent):  # the worst case costs every attack
            record["passes"] = sum(spent, counting.Passes()).as_dict()
        if source_entry is not None:
            record["source_model"] = source_entry.name
        records.append(record)
    return records


def evaluate(entries, attacks=None, eps_values=(8 / 255,), threats=("white-box",),
             n=1000, source=None, settings=None, dataset=None, data_dir=None, log=None,
             crafted=None, white_box_attacks=(), store=None, skip=0, shard=None, stop=None,
             input_range=(0.0, 1.0), request=None):
    """Records of robust accuracy for each model x threat model x attack x eps (`attacks`: names
    from `attack_specs`, by default every selectable one).

    Each model and threat model also gets a "worst-case" record per eps: the share of images that
    survive every bounded attack that ran (per image, as AutoAttack reports).
    `source`: a ModelEntry crafting the transfer attacks for every model; when None, each model's
    undefended twin is looked up beside its run directory.
    `log`: where progress goes (default: the `fmfp_tf` logger, at INFO).
    `crafted`: an optional dict reused across calls to keep adversarial examples by the model that
    crafted them, so examples transferred from one twin to many defended models, and the twin's own
    white-box examples, are crafted once.
    `white_box_attacks`: further attacks run under the white-box threat model only (they enter
    its worst case): the strongest attack beside a protocol that transfers weaker ones.
    `store`: a `cells.CellStore`; each (model, threat, attack, eps) cell is written to it the
    moment it is done, and a cell it already holds (same model files, images, attack settings)
    is read back instead of attacked again: an interrupted evaluation continues where it stopped.
    `skip`: evaluate the seeded test sample's images skip+1 .. skip+n (one shard of a longer
    evaluation; each record says its `skip`).
    `shard`: "K/N" or (K, N): only the K-th of N contiguous parts of those n images (one job of
    an array over hosts; `shards.join` puts the parts together). Every image's random draws
    derive from (seed, its place in the sample), so a part's per-image results are the whole
    run's.
    `input_range`: (low, high), the range the models take their inputs in (0-255 for Keras's
    applications with their preprocessing inside); the test images are mapped onto it and every
    attack runs with those `bounds`, eps a share of the range (8/255 is 8 levels of 0-255), as
    reports state it. Records say it.
    `stop`: an object whose `signal` becomes non-None to ask for a stop (`stopping.StopFlag`):
    checked after every batch of an attack and before every cell, it ends the evaluation with
    `errors.Interrupted` (finished cells stay in `store`; an ensemble's finished attacks too).
    """
    if request is None:
        request = EvaluationRequest.build(attacks, eps_values, threats, n, skip, shard,
                                          white_box_attacks, settings, dataset, data_dir,
                                          input_range)
    elif (attacks, tuple(eps_values), tuple(threats), n, settings, dataset, data_dir,
          tuple(white_box_attacks), skip, shard, tuple(input_range)) != (
            None, (8 / 255,), ("white-box",), 1000, None, None, None, (), 0, None, (0.0, 1.0)):
        raise UsageError("evaluate(): give the request or its fields (attacks, eps_values, ...), "
                         "not both")
    return _run(entries, request, source, log or logger.info, crafted, store, stop)


def _run(entries, request, source, log, crafted, store, stop):
    low, high = request.input_range
    if (low, high) != (0.0, 1.0):  # the models seen on [0, 1]: every attack and check as ever
        ranged = attack_lib.common.in_unit_range
        entries = [dataclasses.replace(e, model=ranged(e.model, (low, high))) for e in entries]
        source = source and dataclasses.replace(source, model=ranged(source.model, (low, high)))
    for entry in entries:  # fail before hours of attacks on the first models, not after
        _dataset_of(entry, request.dataset, request.data_dir)
        if "transfer" in request.threats and source is None:
            _twin_of(entry)
    unique_names(entries)  # one label per model in records and reports
    job = _Job(request, source, log, crafted, store, stop)
    # every model's test images are read (and checked against it) before the plan measures
    # anything: a wrong data folder or an unfitting model is said first, not after 30 s
    targets = [_target(job, entry) for entry in entries]
    _say_the_plan(entries, job.request, job.n, log)
    records = []
    for target in targets:
        records += _evaluate_one(job, target)
    return records


def _attacks_under(threat, attacks, white_box_attacks):
    """The attacks a threat model runs: the white-box-only ones join the white-box threat."""
    return list(attacks) + list(white_box_attacks) if threat == "white-box" else list(attacks)


def _cell_label(entry, threat, attack, eps):
    return f"{entry.name} [{threat}] {attack}" + (f" eps={format_eps(eps)}" if eps is not None
                                                  else "")


def _duration(seconds):
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _seconds_per_pass(entry, settings, n):
    """(seconds of one gradient, seconds of one forward pass) per image on `entry`'s model,
    measured: FGSM (one gradient) and a prediction on a batch of random images, each timed
    after a first call that compiles it."""
    shape = tuple(getattr(entry.model, "input_shape", None) or ())[1:]
    if not shape or None in shape:
        return None
    batch = max(1, min(settings.batch_size, n))
    x = np.random.default_rng(0).random((batch, *shape)).astype("float32")
    y = np.zeros(batch, np.int32)
    timed = []
    for call in (lambda: attack_lib.fgsm(entry.model, x, y, eps=0.01, batch_size=batch),
                 lambda: attack_lib.common.predict_logits(entry.model, x, batch)):
        call()
        started = time.perf_counter()
        call()
        timed.append((time.perf_counter() - started) / batch)
    return tuple(timed)


def _say_the_plan(entries, request, n, log):
    """Logs what will run and what it will cost, before anything runs: models x threat models
    x attacks x eps, the passes per image each attack declares at most (the unit records count)
    and a time bound from them and a measured gradient and forward pass."""
    attacks, white_box_attacks = list(request.attacks), list(request.white_box_attacks)
    eps_values, threats, settings = request.eps_values, list(request.threats), request.settings
    planned, cells_count, unknown = counting.Passes(), 0, []
    for entry in entries:
        randomized = threat_models.is_randomised_at_test_time(entry.model)
        for threat in threats:
            if threat == "adaptive" and not randomized:
                continue
            for attack, eps in _plan(_attacks_under(threat, attacks, white_box_attacks),
                                     eps_values, threat, settings):
                spec = attack_specs.get(attack)
                cells_count += 1
                cost = spec.planned_passes(
                    spec.params(settings, eps, randomized and threat == "white-box"))
                if cost is None:
                    unknown.append(attack)
                    continue
                draws = settings.eot_samples if threat == "adaptive" else 1
                planned = planned + counting.Passes(cost.forward * draws, cost.backward * draws)
    timed = (_seconds_per_pass(entries[0], settings, n) if entries and planned.forward
             else None)
    head = (f"plan: {len(entries)} model(s) x {len(threats)} threat model(s) "
            f"({', '.join(threats)}) x attacks ({', '.join(attacks + list(white_box_attacks))}) x "
            f"{len(eps_values)} eps = {cells_count} cells on up to {n} test images each"
            + _precision_note(attacks + list(white_box_attacks), settings))
    if timed is None:
        log(head + "; no time estimate (the model's input shape is unknown)")
        return
    per_gradient, per_forward = timed
    # an iterative attack's step costs a little more than the bare gradient FGSM times (its own
    # bookkeeping): 1.25 covers APGD's, measured
    seconds = 1.25 * n * (planned.backward * per_gradient
                          + max(planned.forward - planned.backward, 0) * per_forward)
    log(head + f"; at most {_count(planned.forward * n)} forward and "
        f"{_count(planned.backward * n)} backward passes, about {_duration(seconds)} "
        f"({per_gradient * 1e3:.2f} ms per image and gradient, {per_forward * 1e3:.2f} ms per "
        "forward pass, measured now; AutoAttack, Square and C&W stop early on images already "
        "broken, and cells kept from an earlier run are read back, so it is often less)"
        + (f"; not estimated: {', '.join(sorted(set(unknown)))}" if unknown else ""))


def _precision_note(attacks, settings):
    """Which precision the attacks that take one run in, when one of them is planned."""
    from fmfp_tf.attacks import precision as precision_lib

    bfloat16 = AttackSettings(precision="bfloat16")
    takes = [a for a in attacks if "precision" in attack_specs.get(a).params(bfloat16, 8 / 255)]
    if not takes:
        return ""
    used = precision_lib.resolve(settings.precision)
    why = (" (auto: this CPU computes bfloat16 natively and Keras sees no accelerator)"
           if settings.precision == "auto" and used == "bfloat16" else
           " (auto)" if settings.precision == "auto" else "")
    return (f"; {', '.join(takes)} in {used}{why}"
            + ("; successes decided in float32" if used == "bfloat16" else ""))


def _count(value):
    return f"{value / 1e6:.1f} M" if value >= 1e6 else f"{int(round(value)):,}"


def _model_digest(entry):
    return cells.file_digest(resolve_model_path(entry.path))


@dataclasses.dataclass
class _Job:
    """One `evaluate` call: its request and what runs it (the log, the crafted-examples cache,
    the cell store, the stop flag); every model shares it."""

    request: EvaluationRequest
    source: typing.Optional[ModelEntry]
    log: typing.Callable
    crafted: typing.Optional[dict]
    store: typing.Optional[cells.CellStore]
    stop: typing.Any = None  # its `signal` set: stop at the next batch (stopping.StopFlag)

    def __post_init__(self):
        # the images after the shard: skip+1 .. skip+n of the seeded sample
        self.skip, self.n, self.shard, self.sample_n = self.request.images()


@dataclasses.dataclass
class _Target:
    """One model under evaluation, with its test images and what keys its cells."""

    entry: ModelEntry
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    dataset_name: str
    randomized: bool
    base: dict
    images_digest: str
    labels_digest: str
    model_digest: typing.Optional[str]
    ids: np.ndarray = None  # each image's place in the seeded sample: its random draws' key


def _target(job, entry):
    request = job.request
    x, y, num_classes, dataset_name = test_images(entry, job.n, request.dataset, request.data_dir,
                                                  request.settings.seed, job.skip)
    check_compatible(entry.model, x.shape[1:], num_classes, entry.name, dataset_name)
    randomized = threat_models.is_randomised_at_test_time(entry.model)
    base = {"model": entry.name, "defense": entry.defense, "size": entry.size,
            "size_pixels": entry.size_pixels, "dataset": dataset_name, "n": int(len(y)),
            "skip": job.skip, "randomized": randomized, "seed": job.request.settings.seed}
    if job.shard:  # which part of which sample, for `fmfp-tf report` to join and check
        base.update(shard=job.shard, sample_n=job.sample_n)
    if job.request.input_range != (0.0, 1.0):
        base["input_range"] = list(job.request.input_range)
    # examples are reused only for the very same test images
    return _Target(entry, x, y, num_classes, dataset_name, randomized, base,
                   hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16],
                   hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()[:16],
                   _model_digest(entry) if job.store is not None else None,
                   job.skip + np.arange(len(y), dtype=np.int64))


def _evaluate_one(job, target):
    entry = target.entry
    settings = job.request.settings
    clean = threat_models.predict_labels("white-box", entry.model, target.x,
                                         settings.eot_samples)
    records = [{**target.base, "attack": "none", "threat_model": "none", "eps": None,
                "accuracy": float((clean == target.y).mean()), "params": {}, "seconds": 0.0,
                "zero_gradient_share": zero_gradient_share(entry.model, target.x, target.y,
                                                           settings.batch_size)}]
    shard = (f" (the sample's images {job.skip + 1}-{job.skip + len(target.y)}"
             + (f", shard {job.shard} of {job.sample_n}" if job.shard else "") + ")"
             if job.skip or job.shard else "")
    moved = (f" from {entry.data_dir} (its config records {entry.data_dir_recorded}, not here)"
             if entry.data_dir_recorded and not job.request.data_dir else "")
    job.log(f"{entry.name}: clean accuracy {records[-1]['accuracy']:.4f} on {len(target.y)} "
            f"images{shard}{moved}")
    for threat in job.request.threats:
        records += _evaluate_threat(job, target, threat)
    return records


def _evaluate_threat(job, target, threat):
    """The records of one model under one threat model, its worst case included."""
    entry, source_entry = target.entry, None
    if threat == "adaptive" and not target.randomized:
        job.log(f"{entry.name}: adaptive skipped (no test-time randomness; white-box is "
                "adaptive)")
        return []
    if threat == "transfer":
        source_entry = _transfer_source(entry, job.source, target.x, target.num_classes,
                                        target.dataset_name, job.log)
        if source_entry is None:
            return []
    crafter = threat_models.attacked_model(threat, entry.model,
                                           source_entry and source_entry.model,
                                           job.request.settings.eot_samples)
    records, correct = [], {}
    request = job.request
    for attack, eps in _plan(_attacks_under(threat, request.attacks, request.white_box_attacks),
                             request.eps_values, threat, request.settings):
        _stop_if_asked(job, f"before {_cell_label(entry, threat, attack, eps)}")
        record, survived = _evaluate_cell(job, target, threat, crafter, source_entry, attack,
                                          eps)
        if attack_specs.get(attack).in_worst_case and eps is not None and survived is not None:
            correct.setdefault(eps, {})[attack] = (
                survived, counting.Passes.from_dict(record.get("passes")))
        records.append(record)
    return records + _worst_case(target.base, threat, correct, source_entry)


def _evaluate_cell(job, target, threat, crafter, source_entry, attack, eps):
    """(record, per-image survival) of one cell: read back from the store, or attacked."""
    entry, settings = target.entry, job.request.settings
    spec = attack_specs.get(attack)
    # the crafter is random at inference only in white-box (adaptive wraps it in EOT)
    crafter_random = target.randomized and threat == "white-box"
    params = spec.params(settings, eps, crafter_random)
    cell = None
    if job.store is not None:
        crafter_digest = _model_digest(source_entry) if source_entry else target.model_digest
        parts = dict(
            model=target.model_digest, crafter=crafter_digest, images=target.images_digest,
            labels=target.labels_digest, threat=threat, attack=attack, eps=eps, params=params,
            eot_samples=settings.eot_samples, name=entry.name,
            source=source_entry and source_entry.name)
        if job.request.input_range != (0.0, 1.0):
            parts["input_range"] = list(job.request.input_range)
        if "seed" in params:  # random draws per image, keyed by its place in the sample
            parts["draws"] = ["per image", int(target.ids[0]), len(target.ids)]
        cell = cells.cell_key(**parts)

        def damaged(path, reason):
            job.log(f"{_cell_label(entry, threat, attack, eps)}: the kept cell {path} is "
                    f"{reason}; measuring it again")

        found = job.store.get(cell, parts, on_damage=damaged)
        if found is not None:
            job.log(_cell_label(entry, threat, attack, eps)
                    + f": accuracy {found[0]['accuracy']:.4f} (done earlier, read back)")
            return found
    started = time.time()
    label = f"  {entry.name} [{threat}] {attack}"
    components = {}  # an ensemble's share still robust after each of its attacks, on the crafter

    def component_done(name, share):
        components[name] = share
        job.log(f"{label}: after {attack_specs.label(name)}, robust {share:.4f}")

    with _Progress(job.log, label, started, lambda: _stop_if_asked(
            job, f"in {_cell_label(entry, threat, attack, eps)}")) as progress:
        x_adv, passes = _crafted_examples(
            job, target, threat, crafter, source_entry, spec, eps, params, progress,
            stages=job.store.stages(cell) if job.store is not None else None,
            log=component_done)
    survived = threat_models.predict_labels(threat, entry.model, x_adv,
                                            settings.eot_samples) == target.y
    record = {**target.base, "attack": attack, "threat_model": threat, "eps": eps,
              "accuracy": float(survived.mean()), "params": params,
              "seconds": round(time.time() - started, 2), "passes": passes.as_dict()}
    if components and threat != "transfer":  # under transfer they are the source's
        record["components"] = components
    if threat == "transfer":
        record["source_model"] = source_entry.name
    if threat == "adaptive":
        record["params"] = {**record["params"], "eot_samples": settings.eot_samples}
    if not spec.bounded:
        l2 = np.sqrt(((x_adv - target.x) ** 2).reshape(len(target.x), -1).sum(-1))
        record["median_l2"] = float(np.median(l2))
    if job.store is not None:
        job.store.put(cell, record, survived, parts)
    job.log(_cell_label(entry, threat, attack, eps)
            + f": accuracy {record['accuracy']:.4f} ({record['seconds']:.0f} s)")
    return record, (survived if spec.in_worst_case and eps is not None else None)


def _crafted_examples(job, target, threat, crafter, source_entry, spec, eps, params, progress,
                      **hooks):
    """The cell's adversarial examples and the passes (`counting.Passes`) crafting them took; a
    transfer source's are crafted once per call chain
    (`crafted`), keeping every model's white-box examples would hold n images per cell."""
    entry = target.entry
    crafter_path = source_entry.path if threat == "transfer" else entry.path
    key = (os.path.abspath(crafter_path), target.images_digest, spec.name, eps,
           json.dumps(params, sort_keys=True))
    source_path = job.source and os.path.abspath(job.source.path)
    keep = job.crafted is not None and threat != "adaptive" and (
        threat == "transfer" or source_path == os.path.abspath(entry.path))
    if keep and key in job.crafted:
        return job.crafted[key]
    with counting.counted() as passes:
        x_adv = spec.craft(crafter, target.x, target.y, eps, job.request.settings, progress,
                           target.randomized and threat == "white-box", ids=target.ids,
                           **hooks)
    if keep:  # a reused example cost what crafting it cost, and the record says so
        job.crafted[key] = (x_adv, passes)
    return x_adv, passes


def _stop_if_asked(job, where):
    if job.stop is not None and job.stop.signal is not None:
        raise Interrupted(f"stopped by signal {job.stop.signal} {where}")


class _Progress:
    """progress(k, total, robust=None) of a long attack: a line at least every ~10 s, with the
    time left at this pace and, from the attacks that track it, the share still robust;
    `check()` first, after every batch (it raises to stop). Attacks report between batches, and
    one batch can run for minutes (256 images of a 100-step run), so while it runs, a thread
    says every ~10 s that it does and for how long: no silence, whatever the batch."""

    EVERY = 10.0

    def __init__(self, log, label, started, check=None):
        self.log, self.label, self.started, self.check = log, label, started, check
        self.last, self.state = started, None  # (k, total, robust) of the latest report
        self.reported_at = started
        self._done = threading.Event()
        self._thread = None

    def __call__(self, k, total, robust=None):
        if self.check is not None:
            self.check()
        now = time.time()
        self.state, self.reported_at = (k, total, robust), now
        if k < total and now - self.last < self.EVERY:
            return
        self.last = now
        left = (now - self.started) * (total - k) / max(k, 1)
        # k/total in the attack's own unit: images, queries or restarts
        self.log(f"{self.label}: {k}/{total}" + (f", robust so far {robust:.3f}"
                                                 if robust is not None else "")
                 + (f", about {_duration(left)} left" if k < total else ""))

    def __enter__(self):
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name="fmfp-tf progress")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _beat(self):
        while not self._done.wait(1.0):
            now = time.time()
            if now - self.last < self.EVERY:
                continue
            self.last = now
            where = (f"{self.state[0]}/{self.state[1]} reported {now - self.reported_at:.0f} s ago"
                     if self.state else "nothing reported yet")
            self.log(f"{self.label}: a batch is running ({where}; {now - self.started:.0f} s "
                     "in this cell)")
