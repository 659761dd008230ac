"""Checks of the data itself, the first line of defense before (or without) a trained model.

Each module is a registered :class:`~poisonlab.defenses.base.Defense` (imported on first use by
:data:`poisonlab.defenses.DEFENSES`): per-sample validity (:mod:`.validation`), exact and
near duplicates (:mod:`.duplicates`), label-distribution drift against a trusted reference
(:mod:`.drift`) and signed dataset manifests (:mod:`.manifest`).
"""
