"""Attack and detection metrics computed from predictions (pure numpy; no model code).

All label arguments are integer class indices of shape (N,). A *class* argument (``target``,
``source``) is an index or, with ``class_names`` given, a class name, resolved by
:func:`class_index` (the helper the attacks use too, so a name an attack accepts is accepted
here). The backdoor metrics follow the
usual definitions of the backdoor literature (Gu et al., "BadNets", arXiv:1708.06733; Chen et
al., "Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning",
arXiv:1712.05526): clean accuracy on the untouched test set, and the attack success rate (ASR),
the share of triggered non-target test images classified as the attacker's target.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CHANCE_MARGIN",
    "accuracy",
    "asr_is_meaningful",
    "attack_success_rate",
    "chance_level",
    "class_index",
    "confusion_matrix",
    "detection_scores",
    "mixed_accuracy",
    "per_class_accuracy",
    "source_to_target_count",
]


# ---------------------------------------------------------------------------------------- checks
def _labels(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"{name} must hold non-negative class indices, got minimum {arr.min()}")
    return arr.astype(np.int64, copy=False)


def _pair(
    y_true: object, y_pred: object, *, prefix: str = "", allow_empty: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, f"{prefix}y_true")
    p = _labels(y_pred, f"{prefix}y_pred")
    if t.shape != p.shape:
        raise ValueError(
            f"{prefix}y_true and {prefix}y_pred must have the same shape, got {t.shape} and {p.shape}"
        )
    if not allow_empty and t.size == 0:
        raise ValueError(f"{prefix}y_true is empty: need at least one sample")
    return t, p


def class_index(value: object, class_names: Sequence[str] | None = None, *, param: str = "class") -> int:
    """Resolve a class given by name or index to its index.

    With ``class_names`` this is the strict label parser every class that comes into poisonlab
    goes through (:func:`poisonlab.data.labels.resolve_label`, also behind
    ``Dataset.class_index`` and so behind the attacks), so the metrics accept exactly the
    classes an attack accepts.

    Parameters
    ----------
    value : str or int
        A class name in ``class_names``, an index (int or numpy integer), or an index in ASCII
        digits (``"3"``; a class *named* ``"3"`` wins over index 3).
    class_names : sequence of str, optional
        The classes, in index order. Without them only indices are accepted (checked to be
        >= 0; the range is the caller's labels').
    param : str
        The parameter's name, prefixed to error messages (``"target: unknown class ..."``).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names), an index out of range, a name
        without ``class_names`` or a value that is neither a name nor an index.
    """
    if class_names is not None:
        # imported here: the data package loads image libraries that plain metrics do not need
        from poisonlab.data.labels import resolve_label

        try:
            return resolve_label(value, class_names, what="class")
        except ValueError as exc:
            raise ValueError(f"{param}: {exc}") from None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral | str):
        raise ValueError(f"{param} must be a class name (str) or index (int), got {value!r}")
    if isinstance(value, str):
        raise ValueError(
            f"{param}: class name {value!r} needs class_names to resolve it "
            "(pass class_names=dataset.class_names), or give the class index"
        )
    if int(value) < 0:
        raise ValueError(f"{param}: a class index must be >= 0, got {int(value)}")
    return int(value)


def _mask(a: object, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (N,), got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not (np.issubdtype(arr.dtype, np.integer) and np.isin(arr, (0, 1)).all()):
            raise ValueError(f"{name} must be a boolean mask (or 0/1 integers), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


# ---------------------------------------------------------------------------------------- accuracy
def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of samples with ``y_pred == y_true``."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts, shape (num_classes, num_classes), int64: rows = true class, columns = predicted."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    t, p = _pair(y_true, y_pred, allow_empty=True)
    for arr, name in ((t, "y_true"), (p, "y_pred")):
        if arr.size and arr.max() >= num_classes:
            raise ValueError(f"{name} must be in [0, {num_classes - 1}], got maximum {arr.max()}")
    k = int(num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Recall of every class, shape (num_classes,), float64; NaN for classes absent from ``y_true``.

    ``num_classes`` defaults to ``max(y_true.max(), y_pred.max()) + 1``; with it given, empty
    inputs give all-NaN.
    """
    t, p = _pair(y_true, y_pred, allow_empty=num_classes is not None)
    k = int(max(t.max(), p.max()) + 1) if num_classes is None else num_classes
    cm = confusion_matrix(t, p, k)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)


def mixed_accuracy(
    y_true_clean: np.ndarray,
    y_pred_clean: np.ndarray,
    y_true_triggered: np.ndarray,
    y_pred_triggered: np.ndarray,
) -> float:
    """Accuracy on the union of a clean and a triggered test set.

    Triggered samples count as correct only when predicted as their TRUE class (i.e. when the
    backdoor did not fire), so this drops as the attack succeeds. Either part may be empty, not
    both.
    """
    tc, pc = _pair(y_true_clean, y_pred_clean, prefix="clean ", allow_empty=True)
    tt, pt = _pair(y_true_triggered, y_pred_triggered, prefix="triggered ", allow_empty=True)
    n = tc.size + tt.size
    if n == 0:
        raise ValueError("mixed_accuracy needs at least one clean or triggered sample, got 0")
    return float((np.sum(tc == pc) + np.sum(tt == pt)) / n)


# ---------------------------------------------------------------------------------------- attacks
def attack_success_rate(
    y_true_triggered: np.ndarray,
    y_pred_triggered: np.ndarray,
    target: int | str,
    source: int | str | None = None,
    *,
    class_names: Sequence[str] | None = None,
) -> float:
    """Share of triggered test images classified as ``target``.

    Only images whose TRUE class is ``source`` count, or, for an all-to-one backdoor
    (``source=None``), every image whose true class is not ``target``. Images of the target class
    are always excluded. Raises ValueError when no image is left.

    ``target`` and ``source`` are class indices or, with ``class_names``, class names (as the
    attacks take them): ``attack_success_rate(y, p, "bird", "airplane", class_names=names)``.

    An ASR means little on its own: a model that predicts the target for every input scores 1.0.
    Report it beside the clean accuracy (see :func:`asr_is_meaningful`).
    """
    t, p = _pair(y_true_triggered, y_pred_triggered, prefix="triggered ")
    tgt = class_index(target, class_names, param="target")
    if source is None:
        keep = t != tgt
        what = f"non-target (true class != {tgt})"
    else:
        src = class_index(source, class_names, param="source")
        if src == tgt:
            raise ValueError(f"source and target must differ, got both {src}")
        keep = t == src
        what = f"source-class (true class == {src})"
    if not keep.any():
        raise ValueError(
            f"no {what} samples among the {t.size} triggered samples: attack success rate undefined"
        )
    return float(np.mean(p[keep] == tgt))


def source_to_target_count(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    source: int | str,
    target: int | str,
    *,
    class_names: Sequence[str] | None = None,
) -> int:
    """Number of samples of true class ``source`` predicted as ``target`` (e.g. airplane -> bird).

    ``source`` and ``target`` are indices or, with ``class_names``, class names.
    """
    t, p = _pair(y_true, y_pred, allow_empty=True)
    src = class_index(source, class_names, param="source")
    tgt = class_index(target, class_names, param="target")
    return int(np.sum((t == src) & (p == tgt)))


#: how far above chance (1 / K) a model's clean accuracy must be for its ASR to mean anything
CHANCE_MARGIN = 0.05


def chance_level(num_classes: int) -> float:
    """Accuracy of a constant (or random) guess among ``num_classes`` balanced classes: ``1 / K``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    return 1.0 / int(num_classes)


def asr_is_meaningful(clean_accuracy: float, num_classes: int, *, margin: float = CHANCE_MARGIN) -> bool:
    """Whether a model's attack success rate says anything about the attack.

    A model at chance level on clean data (e.g. one that predicts a single class for every
    input after a broken fine-tune) scores ASR 1.0 when that class is the target, without any
    backdoor. Its ASR is meaningful only when its clean accuracy exceeds ``1 / K + margin``.

    Parameters
    ----------
    clean_accuracy : float
        The model's accuracy on the clean test set, in [0, 1].
    num_classes : int
        K, the number of classes.
    margin : float
        How far above chance the accuracy must be (default :data:`CHANCE_MARGIN`, 5 points).

    Returns
    -------
    bool
    """
    return float(clean_accuracy) > chance_level(num_classes) + margin


# ---------------------------------------------------------------------------------------- defenses
def detection_scores(
    mask_true: np.ndarray, mask_pred: np.ndarray, scores: np.ndarray | None = None
) -> dict[str, float | None]:
    """Quality of a poison detector against the ground-truth poison mask.

    Parameters
    ----------
    mask_true : bool array (N,)
        True for the samples that really are poison (e.g. ``Dataset.poison_mask``).
    mask_pred : bool array (N,)
        True for the samples the defense flagged.
    scores : float array (N,), optional
        Suspicion scores (higher = more likely poison); adds ``"auroc"``.

    Returns
    -------
    dict
        ``precision`` = TP/(TP+FP), ``recall`` = TP/(TP+FN), ``f1`` = 2TP/(2TP+FP+FN),
        ``fpr`` = FP/(FP+TN), and ``auroc`` when ``scores`` is given. A ratio whose denominator
        is 0 (nothing flagged, no poison, no clean samples) is ``None``, as is ``auroc`` when
        ``mask_true`` holds a single class.
    """
    t = _mask(mask_true, "mask_true")
    p = _mask(mask_pred, "mask_pred")
    if t.shape != p.shape:
        raise ValueError(f"mask_true and mask_pred must have the same shape, got {t.shape} and {p.shape}")
    if t.size == 0:
        raise ValueError("mask_true is empty: need at least one sample")
    tp = int(np.sum(t & p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    tn = int(np.sum(~t & ~p))

    def ratio(num: int, den: int) -> float | None:
        return None if den == 0 else num / den

    out: dict[str, float | None] = {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "fpr": ratio(fp, fp + tn),
    }
    if scores is not None:
        s = np.asarray(scores)
        if s.shape != t.shape:
            raise ValueError(f"scores must have shape {t.shape}, got {s.shape}")
        if s.dtype == bool or not np.issubdtype(s.dtype, np.number):
            raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
        if not np.all(np.isfinite(s)):
            raise ValueError("scores must be finite (no NaN or inf)")
        if t.all() or not t.any():
            out["auroc"] = None
        else:
            from sklearn.metrics import roc_auc_score

            out["auroc"] = float(roc_auc_score(t, s))
    return out
