"""Gradient-masking checks and the report layout, on hand-made records."""
import json

import pytest

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
    assert "| No attack | 97.00 [95.7, 97.9] |" in markdown  # Wilson: 95.75, 97.89
    assert "| PGD eps=8/255 | 10.00 [8.3, 12.0] |" in markdown
    assert "WARNING: fm pgd" in markdown and warnings
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["records"] == report.with_intervals(records)
    assert payload["warnings"] == warnings
    assert (tmp_path / "accuracy_vs_eps_white-box.png").exists()
    assert str(tmp_path / "results.json") == paths[-1]


def test_autoattack_flags_square_zero_gradients_and_missing_eot():
    records = honest()
    records.append(rec("fm", "white-box", "apgd-ce", 8 / 255, 0.30))
    records.append(rec("fm", "white-box", "square", 8 / 255, 0.05))   # black-box beats gradients
    records[0]["zero_gradient_share"] = 0.25
    text = "\n".join(diagnostics.check(records))
    assert "black-box Square attack leaves 0.050 < pgd 0.100" in text
    assert "25.0 % of the inputs have an exactly zero loss gradient" in text
    assert "without EOT" not in text
    randomized = [dict(r, randomized=True) for r in honest()]
    assert "random at inference but evaluated without EOT" in "\n".join(
        diagnostics.check(randomized))
    with_eot = randomized + [dict(rec("fm", "white-box", "autoattack", 8 / 255, 0.05,
                                      params={"version": "rand"}), randomized=True)]
    assert "without EOT" not in "\n".join(diagnostics.check(with_eot))


def test_report_has_a_worst_case_row_and_the_parameters_that_ran(tmp_path):
    records = honest() + [rec("fm", "white-box", "worst-case", 8 / 255, 0.08,
                              params={"attacks": ["fgsm", "pgd"]}),
                          rec("fm", "white-box", "apgd-t", 8 / 255, 0.09,
                              params={"loss": "dlr", "targeted": True, "steps": 100})]
    report.write(records, str(tmp_path))
    markdown = (tmp_path / "results.md").read_text()
    assert "| Worst case over all attacks eps=8/255 | 8.00 [6.5, 9.8] |" in markdown
    assert "- APGD-T: loss=dlr, targeted=True, steps=100" in markdown
    assert "| fm | mask | 20 |" in markdown  # the models table: size as given


def test_white_box_only_attacks_need_the_white_box_threat_model():
    from fmfp_tf.errors import UsageError
    from fmfp_tf.evaluation.robustness import evaluate

    with pytest.raises(UsageError, match=r"white_box_attacks=\['pgd'\] needs the white-box threat "
                                         "model; threats are transfer"):
        evaluate([], ["fgsm"], threats=["transfer"], white_box_attacks=["pgd"])
    with pytest.raises(UsageError, match="white_box_attacks: unknown deepfool"):
        evaluate([], ["fgsm"], white_box_attacks=["deepfool"])


def test_every_accuracy_has_its_95_percent_interval_and_one_eps_gets_bars(tmp_path):
    low, high = report.wilson_interval(0.5, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)  # the textbook Wilson interval
    assert report.wilson_interval(0.0, 50)[0] == 0.0
    assert report.wilson_interval(1.0, 50)[1] == pytest.approx(1.0)
    records = [rec("fm", "none", "none", None, 0.97, n=100),
               rec("fm", "white-box", "pgd", 8 / 255, 0.5, n=100),
               rec("fm", "white-box", "autoattack", 8 / 255, 0.4, n=100,
                   params={"version": "standard", "steps": 100})]
    paths, _ = report.write(records, str(tmp_path))
    markdown = (tmp_path / "results.md").read_text()
    assert "| PGD eps=8/255 | 50.00 [40.4, 59.6] |" in markdown
    assert "components, in order: APGD-CE, APGD-T, FAB-T, Square" in markdown
    csv_text = (tmp_path / "results.csv").read_text()
    assert "ci95_low,ci95_high" in csv_text.splitlines()[0] and ",0.4038,0.5962," in csv_text
    # one eps: no curve to draw, so bars per attack and model
    assert str(tmp_path / "accuracy_white-box.png") in paths
    assert (tmp_path / "accuracy_white-box.png").stat().st_size > 1000


def test_autoattack_rows_attack_by_attack_and_the_square_flag(tmp_path):
    # the share robust after each of the ensemble's attacks is a row under its own; Square
    # taking more than half a percent of the images inside the ensemble is flagged, less is not
    steps = {"apgd-ce": 0.581, "apgd-t": 0.571, "fab-t": 0.571, "square": 0.569}
    records = honest() + [rec("fm", "white-box", "autoattack", 8 / 255, 0.569, n=2000,
                              components=steps)]
    assert not [w for w in diagnostics.check(records) if "inside AutoAttack" in w]
    report.write(records, str(tmp_path))
    markdown = (tmp_path / "results.md").read_text()
    assert "| AutoAttack eps=8/255 | 56.90 [54.7, 59.1] |" in markdown
    after = markdown.split("| AutoAttack eps=8/255 |")[1].splitlines()[1:5]
    assert [line.split(" | ")[0] for line in after] == [
        "| &nbsp;&nbsp;after APGD-CE", "| &nbsp;&nbsp;after APGD-T", "| &nbsp;&nbsp;after FAB-T",
        "| &nbsp;&nbsp;after Square"]
    assert after[0].endswith("| 58.10 [55.9, 60.2] |")
    masked = dict(steps, square=0.55)
    records[-1] = dict(records[-1], components=masked, accuracy=0.55)
    assert ("inside AutoAttack, Square took 2.1 % of the images the gradient attacks left"
            in "\n".join(diagnostics.check(records)))


def test_figures_carry_intervals_a_clean_bar_and_a_legend_beside_the_axes(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from fmfp_tf import plots

    drawn = {}
    monkeypatch.setattr(plots, "save_figure",
                        lambda figure, path: drawn.__setitem__(path.rsplit("/", 1)[-1], figure))
    records = [rec("fm", "none", "none", None, 0.97, n=100),
               rec("fm", "white-box", "pgd", 8 / 255, 0.5, n=100),
               rec("fm", "white-box", "fgsm", 8 / 255, 0.6, n=100)]
    report.figures(records, str(tmp_path))
    axis = drawn["accuracy_white-box.png"].axes[0]
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert labels[0] == "clean" and {"PGD", "FGSM"} <= set(labels)
    from matplotlib.container import BarContainer

    bars = [c for c in axis.containers if isinstance(c, BarContainer)]
    clean = next(c for c in bars if c.get_label() == "clean")
    assert clean.patches[0].get_height() == pytest.approx(97.0)
    assert all(c.errorbar is not None for c in bars)  # each bar with its interval
    low, high = report.wilson_interval(0.5, 100)
    segment = next(c for c in bars if c.get_label() == "PGD").errorbar.lines[2][0].get_segments()
    assert segment[0][0][1] == pytest.approx(100 * low) and segment[0][1][1] == pytest.approx(
        100 * high)
    # the legend stands beside the axes (anchored right of them), not over the bars
    assert axis.get_legend().get_bbox_to_anchor().x0 > axis.get_window_extent().x1 - 1
    # over several eps: a shaded interval per curve, starting at the clean accuracy
    records += [rec("fm", "white-box", "pgd", 4 / 255, 0.7, n=100)]
    report.figures(records, str(tmp_path))
    curve = drawn["accuracy_vs_eps_white-box.png"].axes[0]
    pgd = next(line for line in curve.get_lines() if line.get_label() == "fm pgd")
    assert list(pgd.get_xdata())[:1] == [0.0] and list(pgd.get_ydata())[:1] == [0.97]
    assert curve.collections  # the fill_between bands
