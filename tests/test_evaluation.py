"""evaluate() and write_evaluation(): accuracy, confusion, source->target indices, test-time
augmentation, written files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from poisonlab.data.dataset import Dataset
from poisonlab.evaluation import Evaluation, evaluate, write_evaluation
from poisonlab.inference import TestTimeAugmentation, forward_pass
from poisonlab.models.base import PoisonlabModel

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ColourOracle(PoisonlabModel):
    """Predicts the dominant colour channel: a model whose predictions the tests know exactly."""

    arch = "colour-oracle"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return features * 10.0


def _strict_json(text: str):
    def reject(value):
        raise ValueError(f"not valid JSON: {value}")

    return json.loads(text, parse_constant=reject)


@pytest.fixture
def oracle() -> ColourOracle:
    return ColourOracle(input_shape=(8, 8, 3), num_classes=3)


@pytest.fixture
def relabelled(colour_data) -> Dataset:
    """The colour data with 4 wrong labels: images 0, 3, 6 (red) labelled green, image 1 (green) blue."""
    y = colour_data.y.copy()
    y[[0, 3, 6]] = 1
    y[1] = 2
    return colour_data.replace(y=y, name="colours-test")


def test_accuracy_and_confusion_match_the_predictions(oracle, colour_data, relabelled):
    colour_pred = np.tile(np.arange(3), 12)  # what the oracle predicts
    result = evaluate(oracle, relabelled, device="cpu")
    assert isinstance(result, Evaluation)
    np.testing.assert_array_equal(result.predictions, colour_pred)
    assert result.predictions.dtype == np.int64
    assert result.accuracy == pytest.approx(32 / 36)
    expected = np.zeros((3, 3), np.int64)
    np.add.at(expected, (relabelled.y, colour_pred), 1)
    np.testing.assert_array_equal(result.confusion, expected)
    assert result.confusion[1, 0] == 3 and result.confusion[2, 1] == 1
    assert result.confusion.sum() == 36
    assert np.trace(result.confusion) / 36 == pytest.approx(result.accuracy)
    np.testing.assert_allclose(result.per_class_accuracy, np.diag(expected) / expected.sum(1))
    assert result.class_names == ("red", "green", "blue")
    assert result.dataset_name == "colours-test" and result.dataset_hash == relabelled.content_hash
    assert result.source is None and result.confusion_indices is None and result.confusion_count is None
    assert evaluate(oracle, colour_data, device="cpu").accuracy == 1.0


@pytest.mark.parametrize(("source", "target"), [("green", "red"), (1, 0), ("1", "0")])
def test_source_target_indices(oracle, relabelled, source, target):
    result = evaluate(oracle, relabelled, source=source, target=target, device="cpu")
    assert (result.source, result.target) == (1, 0)
    np.testing.assert_array_equal(result.confusion_indices, [0, 3, 6])
    expected = np.flatnonzero((relabelled.y == 1) & (result.predictions == 0))
    np.testing.assert_array_equal(result.confusion_indices, expected)
    assert result.confusion_count == 3 == result.confusion[1, 0]


def test_source_target_with_no_confusions(oracle, relabelled):
    result = evaluate(oracle, relabelled, source="red", target="blue", device="cpu")
    assert result.confusion_count == 0 and result.confusion_indices.shape == (0,)


@pytest.mark.parametrize("kwargs", [{"source": "red"}, {"target": "red"}])
def test_only_one_of_source_and_target_is_an_error(oracle, relabelled, kwargs):
    with pytest.raises(ValueError, match="both"):
        evaluate(oracle, relabelled, device="cpu", **kwargs)


@pytest.mark.parametrize(
    ("source", "target", "match"),
    [
        ("cat", "red", "unknown class"),
        ("red", "purple", "unknown class"),
        ("7", "red", "out of range"),
        ("red", "red", "differ"),
        (0, "red", "differ"),
    ],
)
def test_bad_classes_are_value_errors(oracle, relabelled, source, target, match):
    with pytest.raises(ValueError, match=match):
        evaluate(oracle, relabelled, source=source, target=target, device="cpu")


def test_class_count_mismatch(relabelled):
    with pytest.raises(ValueError, match="classes"):
        evaluate(ColourOracle(input_shape=(8, 8, 3), num_classes=4), relabelled, device="cpu")


def test_to_json(oracle, relabelled):
    data = evaluate(oracle, relabelled, source="green", target="red", device="cpu").to_json()
    assert data["n"] == 36 and data["accuracy"] == pytest.approx(32 / 36)
    assert data["class_names"] == ["red", "green", "blue"]
    assert data["per_class_accuracy"]["green"] == pytest.approx(11 / 14)
    assert data["confusion_of_interest"] == {"source": "green", "target": "red", "count": 3}
    assert data["dataset_hash"] == relabelled.content_hash
    _strict_json(json.dumps(data))


def _png_size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        return img.size


def test_write_evaluation_files(tmp_path, oracle, relabelled):
    result = evaluate(oracle, relabelled, source="green", target="red", device="cpu")
    info = {"id": "colour-oracle-123", "name": "oracle", "parent": None}
    out = tmp_path / "report"
    paths = write_evaluation(result, relabelled, out, title="Evaluation of <oracle> & co", model_info=info)
    assert set(paths) == {
        "metrics",
        "confusion_json",
        "confusion_png",
        "confusion_grid",
        "report_md",
        "report_html",
    }
    assert all(p.is_file() and p.parent == out for p in paths.values())

    metrics = _strict_json(paths["metrics"].read_text(encoding="utf-8"))
    assert metrics["accuracy"] == pytest.approx(32 / 36)
    assert metrics["confusion_of_interest"]["count"] == 3
    assert metrics["model"] == info
    assert metrics["confusion_matrix"] == result.confusion.tolist()

    confusion = _strict_json(paths["confusion_json"].read_text(encoding="utf-8"))
    assert confusion == {"class_names": ["red", "green", "blue"], "matrix": result.confusion.tolist()}

    assert paths["confusion_png"] == out / "confusion.png"
    w, h = _png_size(paths["confusion_png"])
    assert w > 100 and h > 100
    assert paths["confusion_grid"] == out / "confusion_green_as_red.png"
    _png_size(paths["confusion_grid"])

    md = paths["report_md"].read_text(encoding="utf-8")
    assert md.startswith("# Evaluation of <oracle> & co")
    assert "| accuracy | 0.8889 |" in md
    assert "![rows: true class, columns: predicted](confusion.png)" in md
    assert "(confusion_green_as_red.png)" in md
    assert "3 test images of class green were predicted as red" in md
    assert "| green | 0.7857 | 14 |" in md

    page = paths["report_html"].read_text(encoding="utf-8")
    assert "<title>Evaluation of &lt;oracle&gt; &amp; co</title>" in page
    assert "<img src='confusion.png'" in page and "<img src='confusion_green_as_red.png'" in page


def test_write_evaluation_without_source_target(tmp_path, oracle, relabelled):
    result = evaluate(oracle, relabelled, device="cpu")
    paths = write_evaluation(result, relabelled, tmp_path / "r", title="plain")
    assert "confusion_grid" not in paths
    assert not list((tmp_path / "r").glob("confusion_*_as_*.png"))
    metrics = _strict_json(paths["metrics"].read_text(encoding="utf-8"))
    assert "confusion_of_interest" not in metrics and "model" not in metrics


def test_write_evaluation_with_an_absent_class_is_valid_json(tmp_path, oracle, colour_data):
    no_blue = colour_data.subset(colour_data.y != 2)
    result = evaluate(oracle, no_blue, source="red", target="blue", device="cpu")
    assert np.isnan(result.per_class_accuracy[2])
    paths = write_evaluation(result, no_blue, tmp_path / "r", title="no blue")
    metrics = _strict_json(paths["metrics"].read_text(encoding="utf-8"))
    assert metrics["per_class_accuracy"] == {"red": 1.0, "green": 1.0, "blue": None}
    _png_size(paths["confusion_grid"])  # an empty grid still draws a PNG


class LeftHalfOracle(PoisonlabModel):
    """Predicts from the dominant colour of the left half only: mirrored views see the right half."""

    arch = "left-half-oracle"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] // 2].mean(dim=(2, 3))

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return features * 10.0


def _half_painted(colour_data) -> Dataset:
    """The colour images with their right half painted in the next class's colour."""
    x = colour_data.x.copy()
    x[:, :, 4:] = x[np.roll(np.arange(len(x)), -1), :, 4:]
    return colour_data.replace(x=x)


def test_tta_accuracy_is_reported_beside_the_plain_one(colour_data):
    data = _half_painted(colour_data)
    tta = TestTimeAugmentation(flip=True, translate=1)
    result = evaluate(LeftHalfOracle(input_shape=(8, 8, 3), num_classes=3), data, device="cpu", tta=tta)
    plain = evaluate(LeftHalfOracle(input_shape=(8, 8, 3), num_classes=3), data, device="cpu")
    assert result.accuracy == plain.accuracy == 1.0  # the plain figures are unchanged
    np.testing.assert_array_equal(result.predictions, plain.predictions)
    np.testing.assert_array_equal(result.confusion, plain.confusion)
    out = forward_pass(LeftHalfOracle(input_shape=(8, 8, 3), num_classes=3), data.x, device="cpu", tta=tta)
    assert result.tta_accuracy == pytest.approx(float((out.predictions == data.y).mean()))
    assert result.tta_accuracy < 1.0  # the mirrored views voted for the right half's colour
    assert plain.tta is None and plain.tta_accuracy is None and "tta_accuracy" not in plain.to_json()
    data_json = result.to_json()
    assert data_json["tta_accuracy"] == result.tta_accuracy
    assert data_json["tta"] == {"flip": True, "translate": 1}


def test_write_evaluation_reports_the_tta_accuracy(tmp_path, oracle, relabelled):
    tta = TestTimeAugmentation(flip=True, translate=1)
    paths = write_evaluation(
        evaluate(oracle, relabelled, device="cpu", tta=tta), relabelled, tmp_path, title="t"
    )
    md = paths["report_md"].read_text(encoding="utf-8")
    assert "| accuracy with test-time augmentation (mirror + 1-pixel shifts) | 0.8889 |" in md
    assert _strict_json(paths["metrics"].read_text(encoding="utf-8"))["tta_accuracy"] == pytest.approx(
        32 / 36
    )
