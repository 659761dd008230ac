"""Mitigation: act on a detector's flags, retrain, and measure what the attack still achieves.

Detection alone changes nothing; the defender then either drops the flagged samples (the
usual remedy for backdoor poison: Tran, Li and Madry, "Spectral Signatures in Backdoor Attacks",
NeurIPS 2018, arXiv:1811.00636, retrain on the filtered set) or, for label noise, relabels them
to a suggested class (the "clean" step of Northcutt, Jiang and Chuang, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 2021, arXiv:1911.00068). :func:`mitigate`
does either; :func:`retrain_and_measure` trains on the result with
:func:`poisonlab.training.train` and reports the clean test accuracy and, for a backdoor, the
attack success rate on triggered test images (for a label attack, the source -> target count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisonlab.data.dataset import Dataset
from poisonlab.defenses.helpers.trigger_args import apply_trigger
from poisonlab.inference import predict
from poisonlab.metrics import accuracy, attack_success_rate, source_to_target_count
from poisonlab.models.base import PoisonlabModel
from poisonlab.training import TrainConfig, train

__all__ = ["MitigationOutcome", "mitigate", "retrain_and_measure"]

_ACTIONS = ("drop", "relabel")


def mitigate(
    dataset: Dataset,
    flagged: np.ndarray,
    *,
    action: str = "drop",
    suggested_labels: np.ndarray | None = None,
) -> Dataset:
    """Drop or relabel the flagged samples of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
    flagged : bool array (N,)
        True for the samples to act on (e.g. ``Defense.predict()``).
    action : {"drop", "relabel"}, default "drop"
    suggested_labels : int array (N,), optional
        Required for ``"relabel"``: the new label of every sample (only the flagged entries are
        used), values in ``[0, num_classes)``.

    Returns
    -------
    Dataset
        ``"drop"``: the unflagged samples, in order, with their sources and poison mask.
        ``"relabel"``: same length; flagged samples take their suggested label, sources get a
        ``"+relabelled"`` suffix. The poison mask is kept as is (it records what was planted).

    Raises
    ------
    ValueError
        For a bad action, a mask of another shape or dtype, missing or out-of-range suggested
        labels, or a drop that would leave fewer than 2 samples.
    """
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a poisonlab Dataset, got {type(dataset).__name__}")
    if action not in _ACTIONS:
        raise ValueError(f"action must be one of {_ACTIONS}, got {action!r}")
    mask = np.asarray(flagged)
    if mask.dtype != bool or mask.shape != (len(dataset),):
        raise ValueError(
            f"flagged must be a bool array of shape ({len(dataset)},), got {mask.dtype} {mask.shape}"
        )
    if action == "drop":
        if suggested_labels is not None:
            raise ValueError("suggested_labels is only used with action='relabel'")
        return _drop(dataset, mask)
    if suggested_labels is None:
        raise ValueError("action='relabel' needs suggested_labels (one per sample)")
    return _relabel(dataset, mask, np.asarray(suggested_labels))


def _drop(dataset: Dataset, mask: np.ndarray) -> Dataset:
    kept = int((~mask).sum())
    if kept < 2:
        raise ValueError(
            f"dropping {int(mask.sum())} of {len(dataset)} samples leaves {kept}: too few to train"
        )
    return dataset.subset(~mask, name=f"{dataset.name}-dropped")


def _relabel(dataset: Dataset, mask: np.ndarray, labels: np.ndarray) -> Dataset:
    if labels.shape != (len(dataset),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"suggested_labels must be integers of shape ({len(dataset)},), got {labels.dtype} {labels.shape}"
        )
    new = labels[mask]
    if new.size and (new.min() < 0 or new.max() >= dataset.num_classes):
        raise ValueError(
            f"suggested labels must be in [0, {dataset.num_classes - 1}], got [{new.min()}, {new.max()}]"
        )
    y = dataset.y.copy()
    y[mask] = new
    source = dataset.source.copy()
    source[mask] = np.array([f"{s}+relabelled" for s in source[mask]], dtype=object)
    return dataset.replace(y=y, source=source, name=f"{dataset.name}-relabelled")


@dataclass(frozen=True)
class MitigationOutcome(Mapping[str, Any]):
    """The retrained model and its measurements; reads like the dict of :meth:`to_dict`.

    ``asr`` is None without a trigger; ``source_to_target`` is None unless ``source`` and
    ``target`` were given (it counts clean test images of the source class predicted as the
    target: the damage of a label attack).
    """

    model: PoisonlabModel
    n_train: int
    clean_accuracy: float
    asr: float | None
    source_to_target: int | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready measurements (without the model)."""
        return {
            "n_train": self.n_train,
            "clean_accuracy": self.clean_accuracy,
            "asr": self.asr,
            "source_to_target": self.source_to_target,
            "seconds": self.seconds,
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def retrain_and_measure(
    clean_dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    val: Dataset | None,
    test: Dataset,
    trigger: Callable[[np.ndarray], np.ndarray] | None = None,
    source: int | None = None,
    target: int | None = None,
    model: PoisonlabModel | None = None,
    device: str = "auto",
    progress: bool = True,
) -> MitigationOutcome:
    """Train on the mitigated set (or fine-tune ``model`` on it) and measure on ``test``.

    Parameters
    ----------
    clean_dataset : Dataset
        The training set after :func:`mitigate`.
    config : TrainConfig, optional
        Recipe for :func:`poisonlab.training.train`.
    val, test : Dataset
        Validation set for the training history (may be None) and clean test set.
    trigger : callable, optional
        Maps a uint8 (N, H, W, C) batch to its triggered version; adds the ASR.
    source, target : int, optional
        Class indices. With a trigger, ``target`` is required and the ASR counts triggered test
        images of class ``source`` (every non-target class when ``source`` is None). With both
        given, ``source_to_target`` is reported too.
    model : PoisonlabModel, optional
        Fine-tune this model instead of training from scratch.

    Returns
    -------
    MitigationOutcome

    Raises
    ------
    ValueError
        For a test set of other classes or image shape, a trigger without a target, or class
        indices out of range.
    """
    _check_measure_args(clean_dataset, test, trigger, source, target)
    result = train(clean_dataset, config, model=model, val_data=val, device=device, progress=progress)
    net = result.model.eval()
    pred = predict(net, test.x, device=device)
    asr = None
    if trigger is not None:
        keep = test.y == source if source is not None else test.y != target
        triggered = apply_trigger(trigger, test.x[keep])
        asr = attack_success_rate(test.y[keep], predict(net, triggered, device=device), target, source)
    s2t = None
    if source is not None and target is not None:
        s2t = source_to_target_count(test.y, pred, source, target)
    return MitigationOutcome(
        model=net,
        n_train=len(clean_dataset),
        clean_accuracy=accuracy(test.y, pred),
        asr=asr,
        source_to_target=s2t,
        seconds=float(result.seconds),
    )


def _check_measure_args(
    data: Dataset, test: Dataset, trigger: object, source: int | None, target: int | None
) -> None:
    for what, d in (("clean_dataset", data), ("test", test)):
        if not isinstance(d, Dataset):
            raise ValueError(f"{what} must be a poisonlab Dataset, got {type(d).__name__}")
    if test.class_names != data.class_names or test.image_shape != data.image_shape:
        raise ValueError(
            f"test set ({test.image_shape}, {test.num_classes} classes) does not match the training set "
            f"({data.image_shape}, {data.num_classes} classes)"
        )
    if len(test) == 0:
        raise ValueError("test set is empty")
    for what, c in (("source", source), ("target", target)):
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < data.num_classes
        ):
            raise ValueError(f"{what} must be a class index in [0, {data.num_classes - 1}], got {c!r}")
    if trigger is not None and not callable(trigger):
        raise ValueError(f"trigger must be a callable on uint8 batches, got {type(trigger).__name__}")
    if trigger is not None and target is None:
        raise ValueError("measuring a trigger's attack success rate needs the target class")
    if source is not None and source == target:
        raise ValueError(f"source and target must differ, got both {source}")
