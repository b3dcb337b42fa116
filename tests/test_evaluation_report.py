"""Gradient-masking checks and the report layout, on hand-made records."""
import json

from fmfp_tf.evaluation import diagnostics, report


def rec(model, threat, attack, eps, accuracy, n=1000, **extra):
    return {"model": model, "defense": "mask", "size": 20, "dataset": "gtsrb", "attack": attack,
            "threat_model": threat, "eps": eps, "n": n, "accuracy": accuracy, "params": {},
            **extra}


def honest():
    return [
        rec("fm", "none", "none", None, 0.97),
        rec("fm", "white-box", "fgsm", 4 / 255, 0.6), rec("fm", "white-box", "fgsm", 8 / 255, 0.4),
        rec("fm", "white-box", "pgd", 4 / 255, 0.3), rec("fm", "white-box", "pgd", 8 / 255, 0.1),
        rec("fm", "white-box", "pgd-unbounded", 1.0, 0.0),
        rec("fm", "transfer", "pgd", 8 / 255, 0.5, source_model="twin"),
    ]


def test_no_warning_for_a_consistent_evaluation():
    assert diagnostics.check(honest()) == []


def test_each_violation_is_named():
    records = honest()
    records[4]["accuracy"] = 0.5                                  # PGD weaker than FGSM at 8/255
    records[5]["accuracy"] = 0.4                                  # unbounded attack fails
    records[6]["accuracy"] = 0.2                                  # transfer beats white-box
    records.append(rec("fm", "white-box", "fgsm", 16 / 255, 0.7))  # accuracy rises with eps
    warnings = diagnostics.check(records)
    text = "\n".join(warnings)
    assert "iterative pgd" in text and "unbounded PGD" in text
    assert "transfer accuracy 0.200 < white-box" in text
    assert "fgsm: accuracy rises from 0.400" in text
    assert "pgd: accuracy rises from 0.300" in text  # PGD at 8/255 now above PGD at 4/255
    assert len(warnings) == 5


def test_differences_within_sampling_noise_are_not_flagged():
    records = honest()
    records[3]["accuracy"] = 0.45
    records[4]["accuracy"] = 0.405  # 0.5 points above FGSM with n=1000: noise
    assert diagnostics.check(records) == []


def test_written_report_lays_out_threat_models_and_is_complete(tmp_path):
    records = honest()
    records[6]["accuracy"] = 0.05
    paths, warnings = report.write(records, str(tmp_path), command="fmfp-tf evaluate ...")
    markdown = (tmp_path / "results.md").read_text()
    assert "## Threat model: white-box" in markdown and "## Threat model: transfer" in markdown
    assert "| No attack | 97.00 |" in markdown
    assert "| PGD eps=8/255 | 10.00 |" in markdown
    assert "WARNING: fm pgd" in markdown and warnings
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["records"] == records and payload["warnings"] == warnings
    assert (tmp_path / "accuracy_vs_eps_white-box.png").exists()
    assert str(tmp_path / "results.json") == paths[-1]
