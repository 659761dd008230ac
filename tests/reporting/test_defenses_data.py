"""The records behind docs/results/defenses.md: counts rebuilt from a matrix.json, row kinds and
classes, the dataset counts, and the errors on malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from poisonlab.reporting.defenses_data import (
    DatasetCounts,
    dataset_counts,
    load_matrix,
    row_classes,
    row_kind,
)

COUNTS = DatasetCounts(("a", "b", "c"), test=(20, 20, 20), train=(40, 30, 30))


def test_digits_counts_come_from_the_embedded_dataset() -> None:
    counts = dataset_counts("digits", 1167)
    assert counts.test_of("7") == 36 and counts.test_of("3") == 37 and sum(counts.test) == 360
    assert counts.train_of("1") == 118
    assert dataset_counts("digits", 1000).train is None  # a share other than the whole split
    cifar = dataset_counts("cifar10", 6000)
    assert cifar.test_of("airplane") == cifar.test_of("rutan-boomerang") == 1000 and cifar.train is None


def test_row_kinds_classes_and_counts() -> None:
    assert row_kind({"description": "backdoor[blended]: 621 airplane->bird, concat"}) == "backdoor"
    assert row_kind({"description": "label_flip: 60 3->8, in place"}) == "label_flip"
    assert row_kind({"description": "weird"}) == "other"
    assert row_classes({"description": "mislabel: 10 external:val:7 -> 1, appended"}) == ("7", "1")
    assert row_classes({"description": "mislabel: 27 external:rutan-boomerang -> bird, appended"}) == (
        "rutan-boomerang",
        "bird",
    )
    assert row_classes({"description": "label_flip: 60 3->8, in place"}) == ("3", "8")
    assert row_classes({"description": "none here"}) == (None, None)
    assert COUNTS.test_of("zz") == 20 and COUNTS.train_of("b") == 30  # equal classes: any class's
    assert DatasetCounts(("a", "b"), (3, 4)).test_of("zz") is None
    assert DatasetCounts(("a",), (5,)).test_of("zz") == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"name": "m"}', "lacks dataset, defenses, clean_model, seconds, rows"),
        (
            '{"name": "m", "dataset": "d", "defenses": [], "clean_model": {}, "seconds": 1, "rows": []}',
            "no attack rows",
        ),
        (
            '{"name": "m", "dataset": "d", "defenses": [], "clean_model": {}, "seconds": 1, '
            '"rows": [{"name": "r"}]}',
            "row 0 lacks description",
        ),
    ],
)
def test_malformed_matrix_raises_value_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "matrix.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_matrix(path, COUNTS)
