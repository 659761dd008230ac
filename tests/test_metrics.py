from __future__ import annotations

import numpy as np
import pytest

from poisonlab.attacks import LabelFlip
from poisonlab.data.dataset import Dataset
from poisonlab.metrics import (
    CHANCE_MARGIN,
    accuracy,
    asr_is_meaningful,
    attack_success_rate,
    chance_level,
    class_index,
    confusion_matrix,
    detection_scores,
    mixed_accuracy,
    per_class_accuracy,
    source_to_target_count,
)

Y_TRUE = np.array([0, 0, 0, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 2, 2, 1, 0, 2, 2, 1])


def test_accuracy():
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 8)
    assert accuracy([1, 2], [1, 2]) == 1.0


def test_confusion_matrix():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 4)
    expected = np.array(
        [
            [1, 0, 2, 0],
            [1, 1, 0, 0],
            [0, 1, 2, 0],
            [0, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64 and cm.sum() == 8
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    np.testing.assert_array_equal(cm, sklearn_metrics.confusion_matrix(Y_TRUE, Y_PRED, labels=range(4)))


def test_per_class_accuracy():
    pca = per_class_accuracy(Y_TRUE, Y_PRED, 4)
    np.testing.assert_allclose(pca[:3], [1 / 3, 1 / 2, 2 / 3])
    assert np.isnan(pca[3])
    assert per_class_accuracy(Y_TRUE, Y_PRED).shape == (3,)
    assert np.isnan(per_class_accuracy([], [], 3)).all()
    with pytest.raises(ValueError, match="y_true is empty"):
        per_class_accuracy([], [])


def test_attack_success_rate_source_to_target():
    # triggered test set (true labels), attack airplane(0) -> bird(2)
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([2, 2, 0, 2, 2, 1, 2])
    assert attack_success_rate(y_true, y_pred, target=2, source=0) == pytest.approx(3 / 4)


def test_attack_success_rate_all_to_one():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([2, 2, 0, 2, 2, 1, 2])
    # the true-bird sample is excluded: 4 hits of 6 non-target samples
    assert attack_success_rate(y_true, y_pred, target=2) == pytest.approx(4 / 6)


def test_attack_success_rate_errors():
    with pytest.raises(ValueError, match="no source-class"):
        attack_success_rate([1, 2], [2, 2], target=2, source=0)
    with pytest.raises(ValueError, match="no non-target"):
        attack_success_rate([2, 2], [2, 2], target=2)
    with pytest.raises(ValueError, match="source and target must differ, got both 2"):
        attack_success_rate([0, 2], [2, 2], target=2, source=2)
    with pytest.raises(ValueError, match="target: class name 'bird' needs class_names"):
        attack_success_rate([0, 2], [2, 2], target="bird")
    with pytest.raises(ValueError, match="target: a class index must be >= 0, got -1"):
        attack_success_rate([0, 2], [2, 2], target=-1)
    with pytest.raises(ValueError, match=r"target must be a class name \(str\) or index \(int\), got 2.0"):
        attack_success_rate([0, 2], [2, 2], target=2.0)  # type: ignore[arg-type]


NAMES = ("airplane", "automobile", "bird")


def test_attack_success_rate_takes_class_names():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2])
    y_pred = np.array([2, 2, 0, 2, 2, 1, 2])
    by_name = attack_success_rate(y_true, y_pred, "bird", "airplane", class_names=NAMES)
    assert by_name == attack_success_rate(y_true, y_pred, 2, 0) == pytest.approx(3 / 4)
    assert attack_success_rate(y_true, y_pred, "bird", class_names=NAMES) == pytest.approx(4 / 6)
    assert attack_success_rate(y_true, y_pred, np.int64(2), "0", class_names=NAMES) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match=r"source: unknown class 'plane'; expected one of \['airplane'"):
        attack_success_rate(y_true, y_pred, "bird", "plane", class_names=NAMES)
    with pytest.raises(ValueError, match=r"target: class index 3 out of range \[0, 2\]"):
        attack_success_rate(y_true, y_pred, 3, class_names=NAMES)


def test_metrics_accept_every_class_an_attack_accepts():
    """The attacks and the metrics resolve classes with one helper: the same names, the same errors."""
    clean = Dataset(x=np.zeros((6, 4, 4, 1), np.uint8), y=[0, 1, 2, 0, 1, 2], class_names=NAMES)
    for source, target in (("airplane", "bird"), (0, 2), ("0", "2"), (np.int64(0), "bird")):
        LabelFlip(source=source, target=target, count=1).poison(clean)  # accepted by the attack
        assert class_index(target, NAMES, param="target") == 2
        assert source_to_target_count(clean.y, clean.y, source, target, class_names=NAMES) == 0
    for bad in ("plane", 7):
        with pytest.raises(ValueError) as from_attack:
            LabelFlip(source=bad, target="bird", count=1).poison(clean)
        with pytest.raises(ValueError) as from_metric:
            source_to_target_count(clean.y, clean.y, bad, "bird", class_names=NAMES)
        assert str(from_attack.value) == str(from_metric.value)


def test_class_index_prefers_a_class_named_with_digits():
    names = ("10", "3", "7")
    assert class_index("3", names) == 1  # the class named "3", not index 3
    assert class_index(2, names) == 2
    assert class_index("2", names) == 2  # no class named "2": an index
    with pytest.raises(ValueError, match=r"^class: a class must be a class name \(str\) or index"):
        class_index(True, names)
    with pytest.raises(ValueError, match="target must be a class name"):
        class_index(True, param="target")
    assert class_index("3") == 3 and class_index(np.int32(4)) == 4


def test_source_to_target_count():
    assert source_to_target_count(Y_TRUE, Y_PRED, source=0, target=2) == 2
    assert source_to_target_count(Y_TRUE, Y_PRED, source=1, target=2) == 0
    assert source_to_target_count(Y_TRUE, Y_PRED, "airplane", "bird", class_names=NAMES) == 2


def test_chance_level_and_a_meaningful_asr():
    assert chance_level(10) == pytest.approx(0.1)
    assert CHANCE_MARGIN == 0.05
    # a collapsed model (everything predicted as one class of ten) has no meaningful ASR
    assert not asr_is_meaningful(0.10, 10)
    assert not asr_is_meaningful(0.15, 10)
    assert asr_is_meaningful(0.16, 10)
    assert asr_is_meaningful(0.9, 2) and not asr_is_meaningful(0.52, 2)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        chance_level(0)


def test_mixed_accuracy():
    # clean: 3/4 right; triggered (true labels): 1/4 right (3 backdoored) -> 4/8
    assert mixed_accuracy([0, 1, 2, 3], [0, 1, 2, 0], [0, 0, 1, 3], [2, 2, 2, 3]) == pytest.approx(0.5)
    assert mixed_accuracy([], [], [0], [0]) == 1.0
    with pytest.raises(ValueError, match="at least one clean or triggered sample"):
        mixed_accuracy([], [], [], [])
    with pytest.raises(ValueError, match="triggered y_true and triggered y_pred must have the same shape"):
        mixed_accuracy([0], [0], [0, 1], [0])


def test_detection_scores():
    t = np.array([1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    p = np.array([1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    s = detection_scores(t, p)
    assert s == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "fpr": 1 / 5})
    assert "auroc" not in s
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.2, 0.3, 0.05, 0.0])
    # positives ranks: 0.9, 0.8 beat every negative; 0.1 beats 2 of 5 -> (5 + 5 + 2) / 15
    assert detection_scores(t, p, scores)["auroc"] == pytest.approx(12 / 15)


def test_detection_scores_degenerate():
    s = detection_scores(np.zeros(4, bool), np.zeros(4, bool), scores=np.arange(4.0))
    assert s == {"precision": None, "recall": None, "f1": None, "fpr": 0.0, "auroc": None}
    s = detection_scores(np.ones(3, bool), np.array([1, 0, 0]), scores=np.ones(3))
    assert s["precision"] == 1.0 and s["recall"] == pytest.approx(1 / 3) and s["fpr"] is None
    assert s["auroc"] is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: accuracy([0, 1], [0]), r"same shape, got \(2,\) and \(1,\)"),
        (lambda: accuracy([], []), "y_true is empty"),
        (lambda: accuracy([[0, 1]], [[0, 1]]), r"y_true must have shape \(N,\), got shape \(1, 2\)"),
        (lambda: accuracy([0.0, 1.0], [0, 1]), "integer class indices, got dtype float64"),
        (lambda: accuracy([True], [True]), "integer class indices, got dtype bool"),
        (lambda: accuracy([-1], [0]), "non-negative"),
        (lambda: confusion_matrix([0, 5], [0, 1], 3), r"y_true must be in \[0, 2\], got maximum 5"),
        (lambda: confusion_matrix([0], [0], 0), "num_classes must be an int >= 1"),
        (lambda: detection_scores([1, 0], [1]), "same shape"),
        (lambda: detection_scores([0.5, 1.0], [1, 0]), "boolean mask"),
        (lambda: detection_scores([True, False], [True, False], [1.0]), r"scores must have shape \(2,\)"),
        (lambda: detection_scores([True, False], [True, False], [np.nan, 1.0]), "finite"),
        (lambda: detection_scores([], []), "empty"),
    ],
)
def test_validation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
