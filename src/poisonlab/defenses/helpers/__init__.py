"""Pieces that several defenses share; each module holds one kind of thing.

* :mod:`~poisonlab.defenses.helpers.robust_stats`: median/MAD scales and robust z-scores;
* :mod:`~poisonlab.defenses.helpers.feature_spaces`: the pixel/feature-space anomaly-detector
  recipe (sample matrix, per-class groups, PCA);
* :mod:`~poisonlab.defenses.helpers.linear_head`: linear softmax heads on frozen features, the one
  way they are fitted; :mod:`~poisonlab.defenses.helpers.head_refit` retrains one per bag of
  samples by Newton steps;
* :mod:`~poisonlab.defenses.helpers.reclassification`: judging a class split in two;
* :mod:`~poisonlab.defenses.helpers.sources`: selecting samples by source tag;
* :mod:`~poisonlab.defenses.helpers.trigger_args`: what a ``triggers=`` argument may be.
"""
