"""Model-level checks a candidate model must pass before it is promoted.

* :mod:`.canary`: trusted canary records the model must keep classifying right;
* :mod:`.sensitivity`: the trigger-sensitivity test (do known triggers pull clean images to one
  class?).

Unlike the detectors, these judge a trained model, not its training set.
"""
