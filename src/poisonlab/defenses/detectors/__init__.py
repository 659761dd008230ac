"""Training-set poison detectors: one module per method, each citing its paper.

Every class here is a :class:`~poisonlab.defenses.base.Defense` registered in
:data:`poisonlab.defenses.DEFENSES`; the registry imports each module on first use, so this
package imports none of them eagerly. They depend only on the contract
(:mod:`poisonlab.defenses.base`) and :mod:`poisonlab.defenses.helpers`.

* statistical / unsupervised anomaly detection on pixels or penultimate features:
  :mod:`.zscore`, :mod:`.kmeans`, :mod:`.dbscan`, :mod:`.isolation_forest`, :mod:`.autoencoder`;
* representation-space backdoor detectors: :mod:`.activation_clustering`, :mod:`.spectral`;
* label noise, influence and provenance: :mod:`.confident_learning`, :mod:`.roni`,
  :mod:`.provenance`;
* the inference-time input filter STRIP, usable as a scan of a dataset too: :mod:`.strip`.
"""
