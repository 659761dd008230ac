"""Acting on what the detectors found: drop or relabel and retrain, or train against triggers.

* :mod:`.drop_and_retrain`: :func:`mitigate` (drop or relabel the flagged samples) and
  :func:`retrain_and_measure` (retrain and report clean accuracy and attack success);
* :mod:`.adversarial_training`: trigger-augmented training.
"""

from poisonlab.defenses.mitigation.drop_and_retrain import MitigationOutcome, mitigate, retrain_and_measure

__all__ = ["MitigationOutcome", "mitigate", "retrain_and_measure"]
