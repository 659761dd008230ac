"""What the attacks x defenses matrix produces: one record per attack row and the whole result.

Records only: :mod:`poisonlab.experiments.matrix.run` fills them, :mod:`.report` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from poisonlab.experiments.matrix.config import MatrixConfig
from poisonlab.reporting.stamp import defense_parameters, result_provenance
from poisonlab.reporting.stats import mean_interval
from poisonlab.reprs import concise_repr

__all__ = ["DETECTION_KEYS", "AttackRow", "MatrixResult", "aggregate_seeds"]

#: The detection metrics of every cell, scored against the attack's ground-truth poison mask.
DETECTION_KEYS = ("precision", "recall", "f1", "fpr", "auroc")


@dataclass
class AttackRow:
    """Everything measured for one attack.

    Attributes
    ----------
    name, description : str
        The row's display name and the attack's own description.
    poison_count, train_size : int
        Poisoned samples, and the size of the poisoned training set.
    model_id : str
        Registry id of the (cached) model trained on the poisoned set.
    poisoned : dict
        ``clean_accuracy`` and ``attack_success`` of the poisoned model.
    clean_model_success : float or None
        Attack success measured on the clean model (the floor).
    detection : dict
        Defense name -> detection metrics, ``flagged`` count and ``seconds``.
    mitigation : dict
        Defense name (or ``"oracle"``) -> the retrained model's metrics, ``model_id``,
        ``removed`` and ``poison_left``.
    forward_seconds : float or None
        The forward pass the defenses shared.
    """

    name: str
    description: str
    poison_count: int
    train_size: int
    model_id: str
    poisoned: dict[str, float | None]
    clean_model_success: float | None
    detection: dict[str, dict[str, Any]] = field(default_factory=dict)
    mitigation: dict[str, dict[str, Any]] = field(default_factory=dict)
    forward_seconds: float | None = None


@dataclass
class MatrixResult:
    """The matrix so far (rows are appended as they finish).

    Attributes
    ----------
    config : MatrixConfig
        The matrix's config.
    rows : list of AttackRow
        One per finished attack, in config order.
    clean : dict
        ``model_id``, ``clean_accuracy`` and ``attack_success`` (None) of the clean model.
    seconds : float
        Wall time up to the last finished row.
    """

    config: MatrixConfig
    rows: list[AttackRow]
    clean: dict[str, float | None]
    seconds: float

    def __repr__(self) -> str:
        return concise_repr(
            self,
            matrix=self.config.name,
            attacks=[r.name for r in self.rows],
            defenses=self.config.defense_names(),
            seconds=round(self.seconds, 1),
        )

    def provenance(self) -> dict[str, Any]:
        """Commit, versions, the seed and every parameter: the config, the resolved training
        recipe, and each column's defense with its full parameters (defaults included; the
        screen's detectors run with theirs)."""
        from poisonlab.defenses.scan.screen import MIN_VOTES  # heavy import: only when written

        cfg = self.config
        given = {d.name: dict(d.params) for d in cfg.defenses or []}
        names = [n for n in cfg.defense_names() if n != "screen"]
        training = cfg.experiment(cfg.attacks[0]).clean_train_config().model_copy(update={"seed": cfg.seed})
        parameters = {
            "config": cfg.model_dump(mode="json", exclude={"base_dir"}),
            "training": training.model_dump(mode="json"),
            "defenses": defense_parameters((n, given.get(n, {})) for n in names),
            "screen": {"min_votes": MIN_VOTES} if "screen" in cfg.defense_names() else None,
        }
        return result_provenance(seeds=[cfg.seed], parameters=parameters)

    def to_json(self) -> dict[str, Any]:
        """The contents of ``matrix.json`` (with its ``provenance`` block)."""
        return {
            "name": self.config.name,
            "description": self.config.description,
            "dataset": self.config.dataset.name,
            "defenses": self.config.defense_names(),
            "provenance": self.provenance(),
            "clean_model": self.clean,
            "seconds": self.seconds,
            "rows": [row.__dict__ for row in self.rows],
        }


#: figures that are rates or shares, whose t interval is cut to [0, 1]; the others are counts
RATE_KEYS = frozenset(DETECTION_KEYS) | {"clean_accuracy", "attack_success", "clean_model_success"}


def _stat(values: Sequence[float | None], key: str) -> dict[str, Any]:
    """Mean, sample std and t interval of the defined ``values`` (None: undefined in that seed,
    e.g. a precision with nothing flagged); ``defined`` of ``seeds`` counts them. The interval of
    a rate (:data:`RATE_KEYS`) is cut to [0, 1]."""
    defined = [float(v) for v in values if v is not None]
    out: dict[str, Any] = {"values": list(values), "seeds": len(values), "defined": len(defined)}
    if defined:
        out |= mean_interval(defined, bounds=(0.0, 1.0) if key in RATE_KEYS else None).to_dict()
    return out


def _seed_of(result: Mapping[str, Any], index: int) -> int:
    prov = result.get("provenance") or {}
    seeds = prov.get("seeds") or [index]
    return int(seeds[0])


def aggregate_seeds(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One matrix from the ``matrix.json`` of several seeds: every figure over seeds.

    Parameters
    ----------
    results : sequence of dict
        ``matrix.json`` contents (:meth:`MatrixResult.to_json`), one per seed, with the same
        name, attacks (rows, in order) and defenses (columns).

    Returns
    -------
    dict
        ``name``, ``dataset``, ``defenses``, ``seeds``; ``clean``: clean accuracy over seeds;
        ``rows``: per attack ``name``, ``poison_count`` (values), ``poisoned`` and
        ``clean_model_success`` (figures over seeds), ``detection`` (defense -> metric ->
        figure) and ``mitigation`` (column -> ``clean_accuracy`` / ``attack_success`` / ``removed``
        / ``poison_left`` -> figure). A figure is ``values`` (None where undefined), ``seeds``,
        ``defined`` and, when defined at least once, ``mean``, ``std`` (ddof=1, None for one),
        ``ci_low`` / ``ci_high`` (Student t) and ``interval``.

    Raises
    ------
    ValueError
        No result, a seed twice, or results that are not the same matrix.
    """
    if not results:
        raise ValueError("aggregate_seeds needs at least one matrix.json")
    seeds = [_seed_of(r, i) for i, r in enumerate(results)]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"each seed may appear once, got {seeds}")
    first = results[0]
    shape = (first["name"], first["defenses"], [r["name"] for r in first["rows"]])
    for seed, r in zip(seeds, results, strict=True):
        if (r["name"], r["defenses"], [row["name"] for row in r["rows"]]) != shape:
            raise ValueError(
                f"seed {seed}'s matrix differs from seed {seeds[0]}'s (name, defenses or attacks)"
            )
    rows = []
    for i, head in enumerate(first["rows"]):
        per_seed = [r["rows"][i] for r in results]
        columns = list(dict.fromkeys(c for row in per_seed for c in row["mitigation"]))
        rows.append(
            {
                "name": head["name"],
                "poison_count": [row["poison_count"] for row in per_seed],
                "poisoned": {
                    k: _stat([row["poisoned"].get(k) for row in per_seed], k) for k in head["poisoned"]
                },
                "clean_model_success": _stat(
                    [row["clean_model_success"] for row in per_seed], "clean_model_success"
                ),
                "detection": {
                    d: {
                        k: _stat([row["detection"].get(d, {}).get(k) for row in per_seed], k)
                        for k in DETECTION_KEYS
                    }
                    for d in first["defenses"]
                },
                "mitigation": {
                    c: {
                        k: _stat([(row["mitigation"].get(c) or {}).get(k) for row in per_seed], k)
                        for k in ("clean_accuracy", "attack_success", "removed", "poison_left")
                    }
                    for c in columns
                },
            }
        )
    return {
        "name": first["name"],
        "dataset": first["dataset"],
        "defenses": first["defenses"],
        "seeds": seeds,
        "clean": {
            "clean_accuracy": _stat([r["clean_model"]["clean_accuracy"] for r in results], "clean_accuracy")
        },
        "rows": rows,
    }
