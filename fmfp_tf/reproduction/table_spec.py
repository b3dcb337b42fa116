"""One paper table as a YAML file (configs/table3.yaml ... table6.yaml), read into a `TableSpec`.

A table file names the defense, its sizes, the columns (dataset x model), the attacks, the budget,
the threat model under which we read the paper's numbers (`protocol`), the training settings shared
by every column (`train`, with overrides per dataset, `gtsrb:`, and per column, `gtsrb/dnn3:`, in
`datasets`) and the evaluation effort
(`evaluation`). `strongest` names attacks run white-box only, beside the paper's: the field's
standard (AutoAttack), so that every white-box number has the strongest attack behind it. A `quick:`
section overrides `train`, `datasets` and `evaluation` for `--quick`, and may keep only some
`columns` (named "dataset/model") and `sizes`. Unknown keys are errors that name the file and the
key.
"""
import dataclasses
import importlib.resources
import os
import typing

from fmfp_tf import defense_registry
from fmfp_tf import sizes as fmfp_sizes
from fmfp_tf.config import TrainConfig, read_yaml
from fmfp_tf.errors import UsageError
from fmfp_tf.evaluation import attack_specs
from fmfp_tf.evaluation.attack_specs import AttackSettings

TABLES = ("table3", "table4", "table5", "table6")
# the paper's tables: no defense, C&W adversarial training, or one defense layer per table
def table_defenses():
    return ("none", "cw-at", *defense_registry.layer_names())


PROTOCOLS = ("white-box", "transfer")
TOP_KEYS = {"table", "title", "defense", "sizes", "columns", "attacks", "strongest", "eps",
            "protocol", "train", "datasets", "evaluation", "quick", "notes"}
QUICK_KEYS = {"train", "datasets", "evaluation", "columns", "sizes"}
# the keys a table's column sets itself; the others come from its train sections
COLUMN_KEYS = {"dataset", "model", "defense", "size", "data_dir"}


def train_keys():
    """The TrainConfig keys a table's `train` sections may set (plugins' groups included)."""
    return set(TrainConfig.keys()) - COLUMN_KEYS


@dataclasses.dataclass
class Column:
    dataset: str
    model: str
    paper_dataset: str  # the dataset name in the paper's table ("faces" in table 6)

    @property
    def label(self):
        return f"{self.dataset}/{self.model}"


@dataclasses.dataclass
class TableSpec:
    path: str
    table: int
    title: str
    defense: str
    columns: typing.List[Column]
    attacks: typing.List[str]
    eps: str
    protocol: str
    # the paper's z as written in the file: a bare number is % of the image side, '4px' pixels
    sizes: typing.List[typing.Optional[str]] = dataclasses.field(default_factory=lambda: [None])
    train: dict = dataclasses.field(default_factory=dict)
    datasets: dict = dataclasses.field(default_factory=dict)
    evaluation: dict = dataclasses.field(default_factory=dict)
    quick: bool = False
    notes: str = ""
    strongest: typing.List[str] = dataclasses.field(default_factory=list)

    @staticmethod
    def paper_z(size):
        """The paper's z of a size as written (20 for '20%'), for looking up its cells; None for
        pixels, which the paper never gives."""
        if size is None or not str(size).endswith("%"):
            return None
        z = float(str(size)[:-1])
        return int(z) if z.is_integer() else z

    def train_settings(self, dataset, model=None):
        """TrainConfig keys of a column: `train`, then `datasets[dataset]`, then
        `datasets["dataset/model"]` (a schedule measured for one architecture)."""
        return {**self.train, **self.datasets.get(dataset, {}),
                **(self.datasets.get(f"{dataset}/{model}", {}) if model else {})}

    def attack_settings(self):
        values = {k: v for k, v in self.evaluation.items() if k != "n"}
        return AttackSettings(**values)

    @property
    def n(self):
        return int(self.evaluation.get("n", 1000))


def _fail(path, message):
    raise UsageError(f"{path}: {message}")


def _check_keys(path, where, mapping, allowed):
    if not isinstance(mapping, dict):
        _fail(path, f"{where} must be a mapping; got {mapping!r}")
    unknown = sorted(set(mapping) - set(allowed))
    if unknown:
        _fail(path, f"unknown key(s) {', '.join(unknown)} in {where}; allowed: "
                    f"{', '.join(sorted(allowed))}")


def table_path(name):
    """A table name (table3..table6) resolved to its YAML file, or a path to a YAML file."""
    if name in TABLES:
        resource = importlib.resources.files("fmfp_tf.configs").joinpath(f"{name}.yaml")
        return str(resource)
    if os.path.isfile(name):
        return name
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        raise UsageError(f"{name}: table file not found")
    raise UsageError(f"unknown table {name!r}; expected one of {', '.join(TABLES)}, all, or a "
                     "path to a table YAML file")


def load(name, quick=False):
    """The TableSpec of a table name or YAML path; `quick` applies its `quick:` section."""
    path = table_path(name)
    data = read_yaml(path)
    _check_keys(path, "the table file", data, TOP_KEYS)
    for key in ("table", "title", "defense", "columns", "attacks", "eps", "protocol"):
        if key not in data:
            _fail(path, f"missing key {key!r}")
    if data["defense"] not in table_defenses():
        _fail(path, f"defense = {data['defense']!r}; expected one of "
                    f"{', '.join(table_defenses())}")
    if data["protocol"] not in PROTOCOLS:
        _fail(path, f"protocol = {data['protocol']!r}; expected one of {', '.join(PROTOCOLS)}")
    attacks, strongest = _attacks(path, data)
    columns, sizes = _columns(path, data), _sizes(path, data)
    quick_section = data.get("quick") or {}
    _check_keys(path, "quick", quick_section, QUICK_KEYS)
    columns = _kept(path, "columns", columns, quick_section.get("columns"), quick,
                    lambda column: column.label)
    if "sizes" in quick_section and sizes == [None]:
        _fail(path, f"quick.sizes given for defense {data['defense']!r}, which takes no size")
    quick_sizes = quick_section.get("sizes")
    if quick_sizes is not None and sizes != [None]:
        sizes = _kept(path, "sizes", sizes, _parse_sizes(path, "quick.sizes", quick_sizes),
                      quick, str)
    sections = _sections(path, data, quick_section if quick else {})
    return TableSpec(path=path, table=int(data["table"]), title=str(data["title"]),
                     defense=data["defense"], columns=columns, attacks=list(attacks),
                     eps=str(data["eps"]), protocol=data["protocol"],
                     sizes=list(sizes), quick=quick, notes=str(data.get("notes", "")).strip(),
                     strongest=list(strongest), **sections)


def _attacks(path, data):
    """(attacks, strongest): registered names; the strongest bounded and not among attacks."""
    attacks = data["attacks"]
    if not isinstance(attacks, list):
        _fail(path, f"attacks = {attacks!r}; expected a list of attack names")
    strongest = data.get("strongest") or []
    if not isinstance(strongest, list):
        _fail(path, f"strongest = {strongest!r}; expected a list of attack names")
    try:
        attack_specs.check_names(attacks, "attacks")
        if strongest:
            attack_specs.check_names(strongest, "strongest")
    except UsageError as error:
        _fail(path, str(error))
    if any(not attack_specs.get(a).bounded or a in attacks for a in strongest):
        _fail(path, f"strongest = {strongest!r}; expected a list of bounded attacks not already "
                    "in attacks (they run white-box only)")
    return attacks, strongest


def _columns(path, data):
    columns = []
    for i, column in enumerate(data["columns"] or []):
        _check_keys(path, f"columns[{i}]", column, {"dataset", "model", "paper_dataset"})
        if "dataset" not in column or "model" not in column:
            _fail(path, f"columns[{i}] needs a dataset and a model")
        columns.append(Column(column["dataset"], column["model"],
                              column.get("paper_dataset", column["dataset"])))
    if not columns:
        _fail(path, "columns is empty")
    return columns


def _sizes(path, data):
    sizes = data.get("sizes", [None])
    if data["defense"] in defense_registry.layer_names():
        return _parse_sizes(path, "sizes", sizes)
    if "sizes" in data:
        _fail(path, f"sizes = {sizes!r} given for defense {data['defense']!r}; only defense "
                    "layers take a size")
    return sizes


def _sections(path, data, quick_section):
    """train, datasets and evaluation, with the quick section's values over them when given."""
    sections = {"train": data.get("train") or {}, "datasets": data.get("datasets") or {},
                "evaluation": data.get("evaluation") or {}}
    if quick_section:
        sections["train"] = {**sections["train"], **(quick_section.get("train") or {})}
        merged = {k: dict(v) for k, v in sections["datasets"].items()}
        for dataset, values in (quick_section.get("datasets") or {}).items():
            merged[dataset] = {**merged.get(dataset, {}), **(values or {})}
        sections["datasets"] = merged
        sections["evaluation"] = {**sections["evaluation"],
                                  **(quick_section.get("evaluation") or {})}
    _check_keys(path, "train", sections["train"], train_keys())
    for dataset, values in sections["datasets"].items():
        _check_keys(path, f"datasets.{dataset}", values, train_keys())
    _check_keys(path, "evaluation", sections["evaluation"], {*AttackSettings.keys(), "n"})
    return sections


def _parse_sizes(path, key, values):
    """A table file's sizes as canonical text: a bare number is the paper's z (% of the side)."""
    if not isinstance(values, list) or not values:
        _fail(path, f"{key} = {values!r}; expected a list such as [10, 20] (% of the image "
                    "side) or [4px]")
    try:
        return [fmfp_sizes.parse(v, bare="percent", name=f"{key} entry").text for v in values]
    except (ValueError, TypeError) as error:
        _fail(path, f"{key} = {values!r}: {error}")


def _kept(path, key, items, names, quick, name_of):
    """The items a `quick.<key>` list keeps (checked even without --quick, so a typo fails at
    once): every name must be one of the table's own."""
    if names is None:
        return items
    known = [name_of(item) for item in items]
    if not isinstance(names, list) or not names or any(
            not isinstance(n, str) or n not in known for n in names):
        _fail(path, f"quick.{key} = {names!r}; expected a non-empty list from {', '.join(known)}")
    return [item for item in items if name_of(item) in names] if quick else items
