"""How reports word attack success and accuracy changes, so that no figure misleads on its own.

* An attack success rate (ASR) is shown beside the model's clean accuracy and marked *not
  meaningful* when that accuracy is at chance level: a collapsed model that predicts the target
  for every input scores ASR 1.0 with no backdoor at all (:func:`asr_text`, :func:`chance_note`).
* An accuracy change says which way it goes and by how much, in points:
  ``clean accuracy 0.912 -> 0.901 (-1.1 points)`` (:func:`accuracy_change`), not a signed
  "drop" whose sign the reader has to decode.
"""

from __future__ import annotations

from poisonlab.metrics import CHANCE_MARGIN, asr_is_meaningful, chance_level

__all__ = ["NOT_MEANINGFUL", "accuracy_change", "asr_text", "chance_note", "meaningful"]

#: the mark after an ASR whose model is at chance level on clean data
NOT_MEANINGFUL = "not meaningful"


def meaningful(clean_accuracy: float | None, num_classes: int | None) -> bool:
    """Whether an ASR measured on a model with this clean accuracy means anything.

    Unknown accuracy or class count gives True: nothing to warn about can be shown.
    """
    if clean_accuracy is None or num_classes is None:
        return True
    return asr_is_meaningful(clean_accuracy, num_classes)


def asr_text(
    asr: float | None,
    clean_accuracy: float | None,
    num_classes: int | None,
    *,
    digits: int = 4,
) -> str:
    """An ASR cell: the rate, and a mark when the model's clean accuracy is at chance level.

    Parameters
    ----------
    asr : float or None
        The attack success rate (None: ``"-"``).
    clean_accuracy : float or None
        The same model's accuracy on the clean test set.
    num_classes : int or None
        Number of classes (chance level is ``1 / num_classes``).
    digits : int
        Decimals of the rate.

    Returns
    -------
    str
        E.g. ``"0.9870"`` or ``"1.0000 (not meaningful: clean accuracy 0.1000 is at chance)"``.
    """
    if asr is None:
        return "-"
    text = f"{asr:.{digits}f}"
    if meaningful(clean_accuracy, num_classes):
        return text
    return f"{text} ({NOT_MEANINGFUL}: clean accuracy {clean_accuracy:.{digits}f} is at chance)"


def chance_note(num_classes: int) -> str:
    """The sentence a report adds under a table with an ASR marked :data:`NOT_MEANINGFUL`."""
    chance = chance_level(num_classes)
    return (
        f"An attack success rate marked '{NOT_MEANINGFUL}' comes from a model whose clean accuracy is "
        f"at most chance level (1/{num_classes} = {chance:.2f}) + {CHANCE_MARGIN * 100:.0f} points: it "
        "predicts (nearly) one class for every input, so it scores ASR 1.0 for that class with no "
        "backdoor at all. Fix the training (or the fine-tune recipe) before reading the ASR."
    )


def accuracy_change(before: float, after: float, *, what: str = "clean accuracy") -> str:
    """``"clean accuracy 0.912 -> 0.901 (-1.1 points)"``: both values and the signed change.

    Parameters
    ----------
    before, after : float
        Accuracies in [0, 1], e.g. the clean model's and the poisoned model's.
    what : str
        The quantity's name.

    Returns
    -------
    str
    """
    points = round((after - before) * 100, 1)  # the sign of what is shown, not of a hidden 0.04
    sign = "+" if points > 0 else "-" if points < 0 else "±"
    return f"{what} {before:.3f} -> {after:.3f} ({sign}{abs(points):.1f} points)"
