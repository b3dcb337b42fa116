"""`fmfp-tf reproduce`: paper numbers, table files, data discovery, reports, caching."""
import csv
import json
import os

import pytest
import yaml

from tests.conftest import REPO, SHARED_DATA, shared_dataset
from fmfp_tf.errors import UsageError
from fmfp_tf.reproduction import paper_numbers, runner, table_spec


def test_paper_numbers_lookup_and_copy_matches_shared():
    assert paper_numbers.lookup(5, "gtsrb", "dnn1", "fgsm", 20) == 91.20
    assert paper_numbers.lookup(3, "gtsrb", "dnn1", "none") == 98.30
    assert paper_numbers.lookup(6, "faces", "facenet", "cw") == 89.00
    assert paper_numbers.lookup(5, "gtsrb", "dnn1", "fgsm", 25) is None
    assert len(paper_numbers.rows()) == 154
    shared = SHARED_DATA.parent / "paper" / "tables.csv"
    if not shared.is_file():
        pytest.skip(f"{shared} absent")
    packaged = REPO / "fmfp_tf" / "reproduction" / "paper_tables.csv"
    assert packaged.read_text() == shared.read_text()


@pytest.mark.parametrize("name", table_spec.TABLES)
def test_every_table_file_parses_and_names_paper_cells(name):
    spec = table_spec.load(name)
    quick = table_spec.load(name, quick=True)
    assert quick.n < spec.n and quick.quick and not spec.quick
    # the full run and quick train on the whole GTSRB training set with the measured schedule
    # (quick for 2 epochs), and a per-column override (yale/facenet's epochs, dnn3's) applies to
    # its column only
    assert "train_limit" not in spec.train_settings("gtsrb", "dnn1")
    assert "train_limit" not in quick.train_settings("gtsrb", "dnn1")
    assert spec.train_settings("gtsrb", "dnn1")["schedule"] == "one-cycle"
    assert spec.train_settings("gtsrb", "dnn1")["epochs"] == 8
    assert spec.train_settings("gtsrb", "dnn2")["epochs"] == 4
    assert spec.train_settings("gtsrb", "dnn3")["epochs"] == 8
    assert quick.train_settings("gtsrb", "dnn1")["epochs"] == 2
    assert quick.train_settings("gtsrb", "dnn4")["epochs"] == 2
    # quick keeps a subset of the columns, always a GTSRB and a face column
    assert {c.dataset for c in quick.columns} >= {"gtsrb", "orl"}
    assert {c.label for c in quick.columns} <= {c.label for c in spec.columns}
    assert spec.strongest == ["autoattack"]
    assert spec.train_settings("yale", "facenet")["epochs"] == 50
    assert spec.train_settings("yale", "mtcnn")["epochs"] == 30
    assert quick.train_settings("yale", "facenet")["epochs"] == 8
    sizes = spec.sizes
    assert (sizes == [None]) == (spec.defense not in ("mask", "padding"))
    # every column and attack of our table has the paper's number to compare with
    for column in spec.columns:
        for size in sizes:
            for attack in ["none"] + spec.attacks:
                paper_size = spec.paper_z(size) if spec.table == 5 else None
                assert paper_numbers.lookup(spec.table, column.paper_dataset, column.model, attack,
                                            paper_size) is not None, (column, size, attack)


def test_table_sizes_are_percent_of_the_side_unless_they_say_px():
    spec = table_spec.load("table5")
    assert spec.sizes == ["10%", "20%", "30%", "40%"]
    assert [spec.paper_z(z) for z in spec.sizes] == [10, 20, 30, 40]
    assert table_spec.load("table6").sizes == ["4px"]


def test_a_table_with_an_invalid_size_names_it(tmp_path):
    path = _write_table(tmp_path, sizes=[10, "150%"])
    with pytest.raises(UsageError, match="150%"):
        table_spec.load(str(path))


def _write_table(tmp_path, **changes):
    data = {
        "table": 5, "title": "tiny", "defense": "mask", "sizes": [10, 40],
        "columns": [{"dataset": "synthetic", "model": "dnn1", "paper_dataset": "gtsrb"},
                    {"dataset": "belgium", "model": "dnn4"}],
        "attacks": ["fgsm", "cw"], "eps": "8/255", "protocol": "transfer",
        "train": {"epochs": 1, "train_limit": 430, "test_limit": 100, "seed": 0},
        "evaluation": {"n": 60, "cw_iterations": 5, "cw_binary_search_steps": 1,
                       "pgd_steps": 5},
    }
    data.update(changes)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_table_file_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(UsageError, match=r"tiny.yaml: unknown key\(s\) epoch in train"):
        table_spec.load(_write_table(tmp_path, train={"epoch": 1}))
    with pytest.raises(UsageError, match=r"tiny.yaml: defense = 'cutout'"):
        table_spec.load(_write_table(tmp_path, defense="cutout"))
    with pytest.raises(UsageError, match=r"tiny.yaml: attacks: unknown deepfool"):
        table_spec.load(_write_table(tmp_path, attacks=["deepfool"]))
    with pytest.raises(UsageError, match=r"tiny.yaml: sizes = \[10, 40\] given for defense 'none'"):
        table_spec.load(_write_table(tmp_path, defense="none"))
    with pytest.raises(UsageError, match=r"unknown table 'table9'"):
        table_spec.load("table9")


def test_data_dirs_from_root_and_explicit(tmp_path):
    (tmp_path / "gtsrb").mkdir()
    (tmp_path / "att_faces").mkdir()
    found = runner.resolve_data_dirs(str(tmp_path), {"belgium": str(tmp_path)})
    assert found == {"gtsrb": str(tmp_path / "gtsrb"), "orl": str(tmp_path / "att_faces"),
                     "belgium": str(tmp_path)}
    with pytest.raises(UsageError, match="data_dirs: belgium=.*not a directory"):
        runner.resolve_data_dirs(None, {"belgium": str(tmp_path / "missing")})
    with pytest.raises(UsageError, match="unknown dataset"):
        runner.resolve_data_dirs(None, {"imagenet": str(tmp_path)})


def test_quick_keeps_the_columns_and_sizes_it_names(tmp_path):
    quick = {"columns": ["synthetic/dnn1"], "sizes": [40], "train": {"epochs": 1}}
    spec = table_spec.load(_write_table(tmp_path, quick=quick), quick=True)
    assert [c.label for c in spec.columns] == ["synthetic/dnn1"] and spec.sizes == ["40%"]
    full = table_spec.load(_write_table(tmp_path, quick=quick))
    assert len(full.columns) == 2 and full.sizes == ["10%", "40%"]
    with pytest.raises(UsageError, match=r"quick.columns = \['gtsrb/dnn9'\]; expected a "
                                         r"non-empty list from synthetic/dnn1, belgium/dnn4"):
        table_spec.load(_write_table(tmp_path, quick={"columns": ["gtsrb/dnn9"]}))
    with pytest.raises(UsageError, match=r"quick.sizes = \['20%'\]; expected .* from 10%, 40%"):
        table_spec.load(_write_table(tmp_path, quick={"sizes": [20]}))
    with pytest.raises(UsageError, match="strongest = .*bounded attacks not already in attacks"):
        table_spec.load(_write_table(tmp_path, strongest=["cw"]))


@pytest.mark.extended
def test_reproduce_tiny_table_caches_models_and_reports_absent_data(tmp_path):
    table = _write_table(tmp_path, strongest=["pgd"])
    out = tmp_path / "out"
    messages = []
    paths = runner.reproduce([table], str(out), log=messages.append)
    assert paths[0] == str(out / "README.md")
    report = (out / "table5" / "report.md").read_text()
    assert "not run: data absent" in report
    with open(out / "table5" / "cells.csv") as handle:
        cells = list(csv.DictReader(handle))
    ran = [c for c in cells if c["status"] == "ok"]
    absent = [c for c in cells if c["status"] != "ok"]
    # 2 sizes x (clean, fgsm, cw, the strongest attack pgd, worst case) per column
    assert len(ran) == 2 * 5 and len(absent) == 2 * 5
    by = {(c["size"], c["attack"]): c for c in ran}
    for size in ("10%", "40%"):
        # the strongest attack runs white-box only: no number under the transfer protocol
        assert by[(size, "pgd")]["protocol_pct"] == "" and by[(size, "pgd")]["white_box_pct"]
        worst = by[(size, "worst-case")]
        assert float(worst["white_box_pct"]) <= min(
            float(by[(size, a)]["white_box_pct"]) for a in ("fgsm", "pgd"))
        assert float(worst["protocol_pct"]) <= float(by[(size, "fgsm")]["protocol_pct"])
    for cell in ran:
        if cell["attack"] in ("pgd", "worst-case"):  # not in the paper's table
            assert not cell["paper_pct"]
            continue
        assert cell["paper_pct"] and cell["protocol_pct"] and cell["white_box_pct"]
        assert float(cell["delta_protocol"]) == pytest.approx(
            float(cell["protocol_pct"]) - float(cell["paper_pct"]), abs=0.011)
        # the control: an undefended model of another seed under the same transferred examples
        assert float(cell["gain_over_control"]) == pytest.approx(
            float(cell["protocol_pct"]) - float(cell["control_pct"]), abs=0.011)
    assert {c["size"] for c in ran} == {"10%", "40%"}
    assert {c["size_pixels"] for c in ran} == {"3", "13"}
    results = json.loads((out / "table5" / "results.json").read_text())
    threats = {r["threat_model"] for r in results["records"]}
    assert threats == {"none", "white-box", "transfer"}
    transfer = [r for r in results["records"] if r["threat_model"] == "transfer"]
    assert all(r["source_model"].startswith("synthetic-dnn1-none") for r in transfer)
    controls = [r for r in transfer if r.get("role") == "control"]
    assert controls and all("-s1-" in r["model"] for r in controls)
    assert "## What the defense adds under the transfer protocol" in report
    # the index lists every model with its own clean accuracy beside the paper's
    with open(out / "models.csv") as handle:
        models = {row["run"]: row for row in csv.DictReader(handle)}
    assert sorted(row["role"] for row in models.values()) == ["control", "defended", "defended",
                                                              "twin"]
    for name, row in models.items():
        metrics = json.loads((out / "models" / name / "metrics.json").read_text())
        assert float(row["test_accuracy_pct"]) == pytest.approx(
            100 * metrics["test_accuracy"], abs=0.006)
        assert float(row["paper_pct"]) > 0  # the twin and control: table 3's gtsrb/dnn1, 98.30
        # training time over every epoch, not only the last process's (a run resumed in pieces)
        assert int(row["train_seconds"]) == round(sum(e["seconds"] for e in metrics["history"]))
    assert "## Models" in (out / "README.md").read_text()
    assert (out / "table5" / "figure.png").stat().st_size > 1000
    trained = [m for m in messages if "training:" in m]
    assert len(trained) == 4  # the twin, the control and two sizes
    # a second run trains and evaluates nothing: the table is complete
    # ...but rewrites what derives from its results, so the report follows the report code
    first_report = (out / "table5" / "report.md").read_text()
    (out / "table5" / "report.md").unlink()
    again = []
    runner.reproduce([table], str(out), log=again.append)
    assert (out / "table5" / "report.md").read_text() == first_report
    assert not [m for m in again if "training:" in m or "clean accuracy" in m]
    assert [m for m in again if "table 5: complete in" in m]
    with open(out / "table5" / "cells.csv") as handle:
        assert [c["protocol_pct"] for c in csv.DictReader(handle)] == [
            c["protocol_pct"] for c in cells]
    # another evaluation setting: the models come from the cache, the table is evaluated again
    table = _write_table(tmp_path, strongest=["pgd"], evaluation={
        "n": 50, "cw_iterations": 5, "cw_binary_search_steps": 1, "pgd_steps": 5})
    third = []
    runner.reproduce([table], str(out), log=third.append)
    assert not [m for m in third if "training:" in m]
    assert len([m for m in third if "cached:" in m]) >= 4
    assert [m for m in third if "clean accuracy" in m and "on 50 images" in m]


@pytest.mark.slow
@pytest.mark.real_data
def test_cli_reproduce_table5_quick_on_real_data(tmp_path):
    """`fmfp-tf reproduce table5 --quick` reports paper, protocol and white-box for every size
    (GTSRB and ORL from ../shared/data). Several minutes here, so it is marked slow:
    `pytest -m slow tests/test_reproduction.py`."""
    from click.testing import CliRunner

    from fmfp_tf.cli.main import cli

    shared_dataset("gtsrb")
    shared_dataset("att_faces")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["reproduce", "table5", "--quick", "--data-root",
                                      str(SHARED_DATA), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with open(out / "table5" / "cells.csv") as handle:
        cells = list(csv.DictReader(handle))
    # the quick section keeps one size of the four
    assert {(c["column"], c["size"]) for c in cells} == {
        ("gtsrb/dnn1", "20%"), ("orl/mtcnn", "20%")}
    for cell in cells:
        assert cell["status"] == "ok"
        assert cell["white_box_pct"], cell
        if cell["attack"] not in ("autoattack", "worst-case"):  # the paper's rows
            assert cell["paper_pct"] and cell["protocol_pct"], cell
    report = (out / "table5" / "report.md").read_text()
    assert "| No attack | 98.09 / " in report
    assert os.path.isfile(out / "table5" / "figure.png")
    # quick GTSRB models learn: at least 80 % on their 1,000 test images (chance is 2.3 %)
    for run in os.listdir(out / "models"):
        if run.startswith("gtsrb-"):
            metrics = json.loads((out / "models" / run / "metrics.json").read_text())
            assert metrics["test_accuracy"] >= 0.80, (run, metrics["test_accuracy"])


def test_a_column_label_names_a_pixel_size_once_and_a_percent_with_its_pixels():
    from fmfp_tf.reproduction import report

    assert report._group_label({"column": "gtsrb/dnn1", "size": "4px", "size_pixels": 4}) == \
        "gtsrb/dnn1 z=4px"
    assert report._group_label({"column": "gtsrb/dnn1", "size": "20%", "size_pixels": 6}) == \
        "gtsrb/dnn1 z=20% (6 px)"


def test_the_tables_model_cache_keys_are_unchanged():
    """`reproduce` names its cached models by fingerprint: the 74 column configs of tables 3-6
    (full and quick, defended and the twin; data_dir /data/<dataset>) hash to the digest the
    flat TrainConfig gave before it was composed of settings groups. A change orphans every
    cached model: print `found` to see which key moved."""
    import hashlib
    import json

    from fmfp_tf.reproduction import table_spec
    from fmfp_tf.reproduction.runner import column_config

    found = {}
    for name in ("table3", "table4", "table5", "table6"):
        for quick in (False, True):
            spec = table_spec.load(name, quick=quick)
            for column in spec.columns:
                for defense in (spec.defense, "none"):
                    for size in (spec.sizes if defense != "none" else [None]):
                        config = column_config(spec, column, f"/data/{column.dataset}", defense,
                                               size)
                        found[f"{name}:{quick}:{column.label}:{defense}:{size}"] = \
                            config.fingerprint()
    digest = hashlib.sha256(json.dumps(found, sort_keys=True).encode()).hexdigest()[:16]
    assert (len(found), digest) == (74, "f0a5e6a2656377e4")
