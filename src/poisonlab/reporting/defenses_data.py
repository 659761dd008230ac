"""The committed records behind ``docs/results/defenses.md`` and the counts computed from them.

:func:`load_sources` reads the two attacks x defenses matrices (``docs/results/defenses/{cifar10,
digits}/matrix.json``), the full-size development case of activation clustering and spectral
signatures (``benchmarks/results/defenses.json``) and, optionally, today's matrix configs
(``experiments/defenses/matrix-*.yaml``, to say what their command reruns now). Each missing
file raises FileNotFoundError and each malformed one ValueError, both naming the file.

A ``matrix.json`` records rates, not the counts behind them. The counts the intervals need are
rebuilt here (:class:`Matrix`): a detector's true positives are its recall times the row's
poison, its false positives the rest of what it flagged, over the row's clean samples; the
test images behind an attack success or a clean accuracy come from the dataset
(:class:`DatasetCounts`). Every rebuilt count must be a whole number, which checks the count it
was rebuilt with: a wrong test-image count fails loudly instead of printing a wrong interval.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from poisonlab.reporting.results_docs import load_json_object
from poisonlab.reporting.stats import RateInterval, rate_interval

if TYPE_CHECKING:  # defenses_seeds imports this module
    from poisonlab.reporting.defenses_seeds import SeededMatrix

__all__ = [
    "ADDED_IN",
    "CIFAR10_TEST_PER_CLASS",
    "DatasetCounts",
    "DefensesSources",
    "Matrix",
    "dataset_counts",
    "load_matrix",
    "load_sources",
    "row_classes",
    "row_kind",
]

#: the commit that added each committed ``matrix.json`` that predates the provenance block
#: (``git log --diff-filter=A``); a file with ``provenance.commit`` names its own commit
ADDED_IN = {"defense-matrix-cifar10": "a68c299", "defense-matrix-digits": "a68c299"}
#: CIFAR-10's test split is the official test batch, whole: 1,000 images of each class
CIFAR10_TEST_PER_CLASS = 1000
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_MATRIX_KEYS = ("name", "dataset", "defenses", "clean_model", "seconds", "rows")
_ROW_KEYS = ("name", "description", "poison_count", "train_size", "poisoned", "clean_model_success")
_ROW_KEYS += ("detection", "mitigation")
_CELL_KEYS = ("f1", "auroc", "recall", "flagged")
# "backdoor[pattern]: 621 airplane->bird, concat"; "mislabel: 10 external:val:7 -> 1, appended"
_PAIR = re.compile(r"(?:external:(?:\w+:)?)?([^\s:]+)\s*->\s*([^\s,]+)")


@dataclass(frozen=True)
class DatasetCounts:
    """Image counts a ``matrix.json`` does not record: test images per class and, where the
    dataset can be read here, the training images per class of the matrix's share."""

    class_names: tuple[str, ...]
    test: tuple[int, ...]
    train: tuple[int, ...] | None = None

    def test_of(self, name: str | None) -> int | None:
        """Test images of class ``name``; any class's when all are equal; else None."""
        if name in self.class_names:
            return self.test[self.class_names.index(name)]
        return self.test[0] if len(set(self.test)) == 1 else None

    def train_of(self, name: str | None) -> int | None:
        """Training images of class ``name`` in the share (None where not counted)."""
        if self.train is None or name not in self.class_names:
            return None
        return self.train[self.class_names.index(name)]


def dataset_counts(dataset: str, base: int) -> DatasetCounts:
    """The counts of ``dataset`` (split seed 0, the matrices' default) for a share of ``base``
    training images: digits is read from scikit-learn's copy (its training split is counted when
    the share is the whole split); CIFAR-10 is not read, its test batch is 1,000 per class."""
    if dataset == "cifar10":
        return DatasetCounts(CIFAR10_CLASSES, (CIFAR10_TEST_PER_CLASS,) * len(CIFAR10_CLASSES))
    from poisonlab.data.catalog import load_splits  # the dataset is read only for the page

    splits = load_splits(dataset, seed=0)
    train = tuple(int(c) for c in splits.train.class_counts())
    return DatasetCounts(
        class_names=tuple(splits.test.class_names),
        test=tuple(int(c) for c in splits.test.class_counts()),
        train=train if sum(train) == base else None,
    )


def row_kind(row: Mapping[str, Any]) -> str:
    """``backdoor``, ``label_flip``, ``mislabel`` or ``other``, from the row's description."""
    head = str(row["description"]).split(":", 1)[0]
    kind = head.split("[", 1)[0].strip()
    return kind if kind in ("backdoor", "label_flip", "mislabel") else "other"


def row_classes(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(source, target)`` class names of a row's description (None where it names none)."""
    match = _PAIR.search(str(row["description"]))
    return (match.group(1), match.group(2)) if match else (None, None)


def _whole(value: float, n: int, what: str) -> int:
    """``value * n`` as a count; ValueError when it is not a whole number (a wrong ``n``)."""
    count = value * n
    if abs(count - round(count)) > 1e-6 * max(1, n):
        raise ValueError(f"{what} {value!r} is not a whole count of {n}")
    return int(round(count))


@dataclass(frozen=True)
class Matrix:
    """One ``matrix.json`` with the counts its intervals need (see the module docstring)."""

    path: Path
    data: dict
    counts: DatasetCounts

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def rows(self) -> list[dict]:
        return list(self.data["rows"])

    @property
    def defenses(self) -> list[str]:
        """The scored defenses (the screen's verdict column aside)."""
        return [d for d in self.data["defenses"] if d != "screen"]

    def kind(self, kind: str) -> list[dict]:
        """The rows of one :func:`row_kind`."""
        return [r for r in self.rows if row_kind(r) == kind]

    def base(self) -> int:
        """Training images before poisoning (appended poison subtracted; in-place poison not)."""
        sizes = {
            r["train_size"] - (r["poison_count"] if "in place" not in r["description"] else 0)
            for r in self.rows
        }
        if len(sizes) != 1:
            raise ValueError(f"{self.path}: rows disagree on the clean training share: {sorted(sizes)}")
        return sizes.pop()

    def accuracy(self, rate: float) -> RateInterval:
        """A clean accuracy as correct test images of the whole test split."""
        n = sum(self.counts.test)
        return rate_interval(_whole(rate, n, f"{self.path}: clean accuracy"), n)

    def success(self, row: Mapping[str, Any], rate: float) -> RateInterval | None:
        """An attack success of ``row`` as test images of its source class predicted as the
        target (None where the source's test count is unknown)."""
        n = self.counts.test_of(row_classes(row)[0])
        if n is None:
            return None
        return rate_interval(_whole(rate, n, f"{self.path}: row {row['name']!r}: attack success"), n)

    def recall(self, row: Mapping[str, Any], defense: str) -> RateInterval:
        """The poison a defense flagged, of the row's poison."""
        poison, cell = row["poison_count"], row["detection"][defense]
        tp = _whole(cell["recall"] or 0.0, poison, f"{self.path}: row {row['name']!r}: {defense} recall")
        return rate_interval(tp, poison)

    def fpr(self, row: Mapping[str, Any], defense: str) -> RateInterval:
        """The clean samples a defense flagged, of the row's clean samples."""
        flagged_clean = row["detection"][defense]["flagged"] - self.recall(row, defense).successes
        return rate_interval(flagged_clean, row["train_size"] - row["poison_count"])

    def commit(self) -> str | None:
        """The commit the matrix ran at: its provenance's, else the commit that added the file."""
        prov = self.data.get("provenance") or {}
        return (str(prov["commit"])[:7] if prov.get("commit") else None) or ADDED_IN.get(self.name)

    def mitigation_mode(self) -> str:
        """What was mitigated: ``best`` (one cell per row, the highest F1), ``all`` (every
        defense), ``screen``, ``none`` or ``listed`` (read from the provenance when recorded)."""
        prov = ((self.data.get("provenance") or {}).get("parameters") or {}).get("config") or {}
        if (prov.get("mitigation") or {}).get("defenses"):
            mode = prov["mitigation"]["defenses"]
            return mode if isinstance(mode, str) else "listed"
        cells = [{k for k in r["mitigation"] if k != "oracle"} for r in self.rows]
        if all(not c for c in cells):
            return "none"
        if all(c == set(self.defenses) for c in cells):
            return "all"
        if all(c == {"screen"} for c in cells):
            return "screen"
        return "best" if all(len(c) == 1 for c in cells) else "listed"

    def oracle(self) -> bool:
        """Whether every row retrained on the true poison's complement too."""
        return all("oracle" in r["mitigation"] for r in self.rows)


@dataclass(frozen=True)
class DefensesSources:
    """Everything ``defenses.md`` quotes: the two matrices, the full-size development case of
    activation clustering and spectral signatures, and today's configs' mitigation (None where
    not given)."""

    cifar: Matrix
    digits: Matrix
    dev_case: dict
    today: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: runs over seeds by dataset folder (``cifar10`` / ``digits``), from ``<name>-seeds/``
    seeded: Mapping[str, SeededMatrix] = field(default_factory=dict)


def _check_rows(path: Path, data: Mapping[str, Any]) -> None:
    if not isinstance(data["rows"], list) or not data["rows"]:
        raise ValueError(f"{path}: no attack rows")
    for i, row in enumerate(data["rows"]):
        missing = [k for k in _ROW_KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"{path}: row {i} lacks {', '.join(missing)}")
        for d in (d for d in data["defenses"] if d != "screen"):
            cell = row["detection"].get(d)
            if not isinstance(cell, dict) or any(k not in cell for k in _CELL_KEYS):
                raise ValueError(f"{path}: row {row['name']!r}: {d} lacks one of {', '.join(_CELL_KEYS)}")


def load_matrix(path: str | Path, counts: DatasetCounts | None = None) -> Matrix:
    """A checked ``matrix.json``; ``counts`` default to :func:`dataset_counts` of its dataset."""
    p = Path(path)
    data = load_json_object(p, _MATRIX_KEYS)
    _check_rows(p, data)
    if counts is None:
        probe = Matrix(p, data, DatasetCounts((), ()))
        counts = dataset_counts(str(data["dataset"]), probe.base())
    return Matrix(p, data, counts)


def _today(configs: Path, name: str) -> dict[str, Any]:
    """``mitigation`` of today's ``matrix-<name>.yaml`` (FileNotFoundError / ValueError)."""
    import yaml

    path = configs / f"matrix-{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"matrix config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("mitigation"), dict):
        raise ValueError(f"{path}: lacks mitigation")
    return dict(data["mitigation"])


def load_sources(
    results: str | Path,
    dev_case: str | Path,
    configs: str | Path | None = None,
    counts: Mapping[str, DatasetCounts] | None = None,
) -> DefensesSources:
    """Read ``results/defenses/{cifar10,digits}/matrix.json``, the runs over seeds under
    ``results/defenses/{cifar10,digits}-seeds/`` where those folders exist
    (:func:`~poisonlab.reporting.defenses_seeds.load_seeded`), the development case record and,
    when ``configs`` is given, today's ``matrix-{cifar10,digits}.yaml`` there.

    ``counts`` (by folder name, ``cifar10`` / ``digits``) replace :func:`dataset_counts`.
    """
    root, counts = Path(results) / "defenses", counts or {}
    case = load_json_object(Path(dev_case), ("case", "results"))
    today = {} if configs is None else {n: _today(Path(configs), n) for n in ("cifar10", "digits")}
    from poisonlab.reporting.defenses_seeds import load_seeded  # it imports this module

    seeded = {
        n: load_seeded(root / f"{n}-seeds") for n in ("digits", "cifar10") if (root / f"{n}-seeds").is_dir()
    }
    return DefensesSources(
        cifar=load_matrix(root / "cifar10" / "matrix.json", counts.get("cifar10")),
        digits=load_matrix(root / "digits" / "matrix.json", counts.get("digits")),
        dev_case=case,
        today=today,
        seeded=seeded,
    )
