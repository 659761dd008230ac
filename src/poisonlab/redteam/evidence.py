"""Each promotion gate's verdict in words, as the red team's transcript shows it.

:func:`gate_summary` reads the gates of a training run's report (``GET /v1/training-runs/{id}``)
and says, per gate, whether it passed and on what evidence.
"""

from __future__ import annotations

__all__ = ["gate_summary"]


def _nc_evidence(gate: dict) -> str:
    """The reverse-engineered trigger that gained most on the candidate, in words."""
    names, ref = gate["class_names"], gate.get("reference_success") or [0.0] * len(gate["success"])
    k = max(range(len(names)), key=lambda j: gate["success"][j] - ref[j])
    flagged = ", ".join(f"'{c}'" for c in gate["flagged"]) or "none"
    return (
        f"flagged {flagged}; trigger for '{names[k]}' ({gate['norms'][k]:.1f} px) works on "
        f"{gate['success'][k]:.0%} vs {ref[k]:.0%} on the serving model"
    )


def gate_summary(gates: dict) -> dict[str, dict]:
    """Each gate's verdict with its evidence in words."""
    out = {}
    for name, gate in gates.items():
        if "error" in gate:
            evidence = f"could not be checked: {gate['error']}"
        elif name == "accuracy":
            evidence = (
                f"candidate {gate['candidate']:.4f} vs serving {gate['serving']:.4f} "
                f"(may drop {gate['max_drop']})"
            )
        elif name == "canaries":
            wrong = len(gate.get("failures", []))
            evidence = f"{gate['n_canaries'] - wrong}/{gate['n_canaries']} canary records right"
            if wrong:
                evidence += f", wrong per class {gate['failures_per_class']}"
        elif name == "neural_cleanse":
            evidence = _nc_evidence(gate)
        elif name == "behaviour":
            top = gate.get("largest") or {}
            evidence = (
                f"largest change: '{top.get('source')}' -> '{top.get('target')}' {top.get('shift', 0):+.0%} "
                f"of the class (may move {gate['max_shift']:.0%})"
            )
        elif name == "sensitivity":
            spikes = [
                f"{s['trigger']} sends {s['rate']:.0%} of '{s['source_name']}' to "
                f"'{s['target_name']}' (base {s['base_rate']:.0%})"
                for s in gate.get("suspected", [])
            ]
            evidence = "; ".join(spikes) or f"no trigger spike over {gate['spike_threshold']}"
        else:
            evidence = ""
        out[name] = {"passed": bool(gate.get("passed")), "evidence": evidence}
    return out
