"""Model-level checks a candidate model must pass before it is promoted.

* :mod:`.canary`: trusted canary records the model must keep classifying right;
* :mod:`.sensitivity`: the trigger-sensitivity test (do known triggers pull clean images to one
  class?);
* :mod:`.neural_cleanse`: triggers reverse-engineered from the model (Neural Cleanse, Wang et al.,
  IEEE S&P 2019): an outlying small mask, or a shortcut the serving model does not share;
* :mod:`.behaviour`: per-class confusion shifts against the serving model on trusted data;
* :mod:`.promotion`: all of them in the order the ImRecS pipeline runs them.

Unlike the detectors, these judge a trained model, not its training set.
"""
