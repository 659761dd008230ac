"""``poisonlab.defenses.scan``: one shared forward pass, metrics against the truth, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import poisonlab.defenses.scan.runner as scan_module
from poisonlab.defenses.scan import parse_method, scan
from poisonlab.defenses.scan.report import write_scan_report
from poisonlab.metrics import detection_scores


def test_parse_method_reads_yaml_scalars() -> None:
    assert parse_method("zscore") == ("zscore", {})
    name, params = parse_method("zscore:threshold=4.5,space=pixels,per_class=false")
    assert name == "zscore" and params == {"threshold": 4.5, "space": "pixels", "per_class": False}
    # YAML 1.1 keeps "1e-3" a string and has no "None": both are read as Python would
    _, params = parse_method("isolation_forest:contamination=1e-3,max_samples=None")
    assert params == {"contamination": 0.001, "max_samples": None}


@pytest.mark.parametrize(
    ("text", "match"),
    [("nope", "unknown defense 'nope'"), ("zscore:threshold", "key=value"), ("zscore:=3", "key=value")],
)
def test_parse_method_errors(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_method(text)


def test_scan_shares_one_forward_pass(mislabeled, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = scan_module.forward_pass

    def counting(*args, **kwargs):
        calls.append(kwargs.get("features"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scan_module, "forward_pass", counting)
    result = scan(
        mislabeled.dataset,
        ["activation_clustering", "spectral_signatures", "confident_learning", "zscore"],
        model=mislabeled.model,
        trusted=mislabeled.splits.val,
        device="cpu",
    )
    assert calls == [True]  # four feature-space defenses, one pass
    assert result.forward_seconds is not None and result.forward_seconds > 0
    spectral = result.method("spectral_signatures")
    # metrics are those of the method's own flags and scores against the mask (how good they
    # are on this checkpoint is the detection benchmark's business)
    assert spectral.metrics == detection_scores(mislabeled.mask, spectral.flagged, spectral.scores)
    per_class = spectral.per_class(mislabeled.dataset)
    assert sum(r["poison"] for r in per_class) == int(mislabeled.mask.sum())
    assert per_class[mislabeled.target]["poison"] == int(mislabeled.mask.sum())


def test_scan_without_truth_has_no_metrics(backdoored) -> None:
    clean = backdoored.splits.train
    result = scan(clean, ["data_checks"])
    assert result.forward_seconds is None
    assert result.methods[0].metrics is None


def test_scan_input_errors(backdoored) -> None:
    with pytest.raises(ValueError, match="at least one"):
        scan(backdoored.dataset, [])
    with pytest.raises(ValueError, match="once per scan"):
        scan(backdoored.dataset, ["data_checks", "data_checks"])
    with pytest.raises(ValueError, match="bad parameters for defense 'zscore'"):
        scan(backdoored.dataset, [("zscore", {"no_such_parameter": 1})], model=backdoored.model)
    with pytest.raises(ValueError, match="needs a model"):
        scan(backdoored.dataset, ["spectral_signatures"])


def test_scan_report_files(backdoored, tmp_path) -> None:
    result = scan(
        backdoored.dataset,
        ["spectral_signatures", "duplicates"],
        model=backdoored.model,
        trusted=backdoored.splits.val,
        device="cpu",
    )
    paths = write_scan_report(result, tmp_path, top=12, model_info={"id": "m"})
    data = json.loads(paths["json"].read_text())
    assert data["dataset"]["poison"] == int(backdoored.mask.sum())
    spectral = data["methods"][0]
    assert spectral["name"] == "spectral_signatures" and len(spectral["top"]) == 12
    # the ranked list is sorted by score and its poison flags are the truth
    scores = [row["score"] for row in spectral["top"]]
    assert scores == sorted(scores, reverse=True)
    assert all(row["poison"] == bool(backdoored.mask[row["index"]]) for row in spectral["top"])
    flags = np.load(paths["flags"])
    assert flags["flagged_spectral_signatures"].sum() == spectral["flagged"]
    html = paths["report_html"].read_text()
    assert "top_spectral_signatures.png" in html and (tmp_path / "top_spectral_signatures.png").is_file()
    assert (tmp_path / "scores_duplicates.png").is_file()
