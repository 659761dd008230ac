"""What the clean-label benchmark produces: the clean models' figures and one row per trial.

Records only: :mod:`poisonlab.experiments.clean_label.run` fills them, :mod:`.report` reads
them, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from poisonlab.experiments.clean_label.config import CleanLabelConfig
from poisonlab.reporting.stamp import defense_parameters, result_provenance
from poisonlab.reprs import concise_repr

__all__ = ["CleanLabelResult", "pool_seeds"]


@dataclass
class CleanLabelResult:
    """Everything measured; ``trials`` holds one dict per (trial, attack).

    Attributes
    ----------
    config : CleanLabelConfig
        The benchmark's config.
    clean : dict
        The surrogate's id, whether it came from the cache, its accuracy and the clean victim's,
        the data sizes, the poison count and the training set's hash.
    trials : list of dict
        One row per (trial, attack), in the order they ran: the draw (victim image, its class,
        the target class), ``success``, ``control``, the poisoned victim's clean accuracy, the
        crafting report, the backdoor rates and the defenses' detection metrics.
    """

    config: CleanLabelConfig
    clean: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        return concise_repr(self, benchmark=getattr(self.config, "name", None), trials=len(self.trials))

    def data(self) -> dict[str, Any]:
        """``config``, ``clean`` and ``trials`` as plain JSON data (what the summaries read)."""
        config = self.config.model_dump(mode="json")
        config.pop("base_dir", None)  # a local path, not a setting
        return {"config": config, "clean": self.clean, "trials": self.trials}

    def provenance(self) -> dict[str, Any]:
        """Commit, versions, the seed and every parameter: the config, the resolved training
        configs of the surrogate and the victim, the defenses' full parameters."""
        cfg = self.config
        parameters = {
            "config": self.data()["config"],
            "pretraining": cfg.pretrain_config().model_dump(mode="json"),
            "victim_training": cfg.victim_config().model_dump(mode="json"),
            "defenses": defense_parameters((d.name, d.params) for d in cfg.defenses or []),
        }
        return result_provenance(seeds=[cfg.seed], parameters=parameters)

    def to_json(self) -> dict[str, Any]:
        """The contents of ``results.json``: :meth:`data` and the ``provenance`` block."""
        return {**self.data(), "provenance": self.provenance()}


def pool_seeds(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One result from the ``results.json`` of several seeds of the same benchmark.

    Every seed draws its own trials (victim image, target class), so the pooled trials are more
    trials of the same experiment: success counts add up and the Wilson interval narrows.

    Parameters
    ----------
    results : sequence of dict
        ``results.json`` contents, one per seed, configs equal except ``seed``.

    Returns
    -------
    dict
        ``config`` (the first seed's, ``seed`` replaced by ``seeds``), ``clean`` (the first
        seed's), ``clean_per_seed`` (seed -> its ``clean``) and ``trials`` (every seed's, each
        row with its ``seed``); where every seed recorded one, ``provenance`` (the first seed's,
        its ``seeds`` replaced by all of them) and ``provenance_per_seed`` (seed -> its own).

    Raises
    ------
    ValueError
        No result, a seed twice, or configs that differ beyond the seed.
    """
    if not results:
        raise ValueError("pool_seeds needs at least one result")
    seeds = [int(r["config"].get("seed", 0)) for r in results]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"each seed may appear once, got {seeds}")
    ref = {k: v for k, v in results[0]["config"].items() if k != "seed"}
    for seed, r in zip(seeds, results, strict=True):
        other = {k: v for k, v in r["config"].items() if k != "seed"}
        if other != ref:
            diff = sorted(k for k in set(ref) | set(other) if ref.get(k) != other.get(k))
            raise ValueError(f"seed {seed}'s config differs from seed {seeds[0]}'s in {diff}")
    trials = [{**row, "seed": seed} for seed, r in zip(seeds, results, strict=True) for row in r["trials"]]
    pooled = {
        "config": {**ref, "seeds": seeds},
        "clean": results[0]["clean"],
        "clean_per_seed": {str(s): r["clean"] for s, r in zip(seeds, results, strict=True)},
        "trials": trials,
    }
    records = [r.get("provenance") for r in results]
    if all(isinstance(record, Mapping) for record in records):  # commit, versions, parameters kept
        pooled["provenance"] = {**records[0], "seeds": seeds}
        pooled["provenance_per_seed"] = {str(s): rec for s, rec in zip(seeds, records, strict=True)}
    return pooled
