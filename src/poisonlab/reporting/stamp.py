"""The provenance block every result file carries: commit, versions, seeds, every parameter.

``run.json`` (:mod:`poisonlab.provenance`) sits next to a result; a result file copied out of its
folder (``docs/results/...``) must still say where it came from. :func:`result_provenance` is
the block ``results.json``, ``matrix.json`` and the clean-label ``results.json`` embed under
``"provenance"``; :func:`defense_parameters` gives the constructor parameters each defense ran
with, defaults included (a detector's defaults change between commits; the config alone, which
names only the overridden ones, would not say what ran).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from poisonlab.provenance import git_commit, machine, package_versions

__all__ = ["PROVENANCE_KEYS", "defense_parameters", "jsonable", "result_provenance"]

#: the keys of every provenance block (tests and the docs' checks look for them)
PROVENANCE_KEYS = ("commit", "versions", "created_at", "seeds", "parameters")


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into JSON types; other objects as
    ``<TypeName>`` (a callable trigger, a model)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return f"<{type(value).__name__}>"


def result_provenance(*, seeds: Sequence[int], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The ``"provenance"`` block of a result file.

    Parameters
    ----------
    seeds : sequence of int
        Every seed the result covers (at least one).
    parameters : mapping
        Every parameter the figures depend on: the config as given, the resolved training
        configs (presets expanded), the defenses' full parameters.

    Returns
    -------
    dict
        ``commit`` (``git rev-parse HEAD`` of the checkout, ``-dirty`` with local changes, None
        outside a checkout), ``versions`` (python, poisonlab, numpy, torch, ...), ``machine``
        (CPU model and kernel level, :func:`~poisonlab.provenance.machine`), ``created_at`` (UTC,
        ISO 8601), ``seeds`` and ``parameters`` (JSON-ready).

    Raises
    ------
    ValueError
        No seed.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("a result covers at least one seed, got none")
    return {
        "commit": git_commit(),
        "versions": package_versions(),
        "machine": machine(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seeds": seeds,
        "parameters": jsonable(dict(parameters)),
    }


def defense_parameters(specs: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each defense's full constructor parameters (defaults included), as it would run.

    Parameters
    ----------
    specs : iterable of (name, params)
        Registry names and the parameters given in the config (may be empty).

    Returns
    -------
    dict
        Name -> ``get_params()`` of the defense built from them (JSON-ready).

    Raises
    ------
    ValueError
        An unknown defense name or a parameter it does not take.
    """
    from poisonlab.defenses import DEFENSES  # heavy: only when a result is written

    out: dict[str, dict[str, Any]] = {}
    for name, params in specs:
        if name not in DEFENSES:
            raise ValueError(f"unknown defense {name!r}; expected one of {sorted(DEFENSES)}")
        try:
            defense = DEFENSES[name](**dict(params))
        except TypeError as exc:
            raise ValueError(f"defense {name!r} does not take {dict(params)}: {exc}") from None
        out[name] = jsonable(defense.get_params())
    return out
