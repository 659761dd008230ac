"""Benchmark: activation clustering and spectral signatures, poisonlab vs IBM ART 1.20.1, CIFAR-10 backdoor.

The case is ``benchmarks/_backdoor_case.py``: every training airplane copied, stamped with
``add_pattern_bd(distance=2, pixel_value=1)`` and labelled bird (about 44k samples, 4k poison,
half of the "bird" label), and the chapter CNN trained on it (cached under
``$POISONLAB_HOME/baselines``; the first run trains it). Each method runs in its own subprocess,
one after the other, so that peak memory (``ru_maxrss``) is per method:

* ``ours``: ONE forward pass with penultimate features (uint8 images in), then
  :class:`~poisonlab.defenses.detectors.activation_clustering.ActivationClustering` and
  :class:`~poisonlab.defenses.detectors.spectral.SpectralSignatures` (defaults, plus the paper's fixed
  1.5 epsilon rule for reference) on that same pass;
* ``art_ac``: ``art.defences.detector.poison.ActivationDefence`` with its defaults;
* ``art_ss`` / ``art_ss_default``: ``SpectralSignatureDefense`` with ``expected_pp_poison=0.1``
  (about the true 9 % poison share; the setting of the issue's measurement) and with ART's
  default 0.33.

ART wraps the same model the ordinary way: ``PyTorchClassifier(model, CrossEntropyLoss,
input_shape=(3, 32, 32), nb_classes=10, clip_values=(0, 1))``, float32 NCHW inputs in [0, 1],
one-hot labels, ART's default layer (the last named module: the logits). Its time includes the
float conversion of the images; ours includes the forward pass.

    POISONLAB_HOME=/tmp/plhome .venv/bin/python benchmarks/defenses.py \\
        --data-dir ../shared/datasets/cifar10-jpeg --out benchmarks/results/defenses.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import environment

WORKERS = ("ours", "art_ac", "art_ss", "art_ss_default")
RESULT_PREFIX = "RESULT "


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def quality(mask: np.ndarray, flagged: np.ndarray, scores: np.ndarray | None = None) -> dict:
    from poisonlab.metrics import detection_scores

    out = detection_scores(mask, flagged, scores)
    out["flagged"] = int(np.sum(flagged))
    return out


def run_ours(case, device: str) -> list[dict]:
    from poisonlab.defenses import get_defense
    from poisonlab.inference import forward_pass

    data, mask = case.poisoned, case.poisoned.poison_mask
    start = time.perf_counter()
    forward = forward_pass(case.model, data.x, features=True, device=device)
    pass_s = time.perf_counter() - start
    rows = []
    for label, name, params in (
        ("poisonlab ActivationClustering", "activation_clustering", {}),
        ("poisonlab SpectralSignatures", "spectral_signatures", {}),
        ("poisonlab SpectralSignatures mode=fixed, eps=0.1", "spectral_signatures", {"mode": "fixed"}),
    ):
        start = time.perf_counter()
        det = get_defense(name, **params).fit(data, forward=forward)
        method_s = time.perf_counter() - start
        rows.append(
            {
                "method": label,
                "params": det.get_params(),
                "pass_s": pass_s,
                "method_s": method_s,
                **quality(mask, det.predict(), det.score_samples()),
                "details": det.details_,
            }
        )
    both = rows[0]["method_s"] + rows[1]["method_s"]
    rows.append({"method": "poisonlab both defaults, one pass", "pass_s": pass_s, "method_s": both})
    for row in rows:
        row["total_s"] = row["pass_s"] + row["method_s"]
    return rows


def run_art(case, which: str) -> list[dict]:
    import torch
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import PyTorchClassifier

    data, mask = case.poisoned, case.poisoned.poison_mask
    start = time.perf_counter()
    x = data.x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    y = np.eye(data.num_classes, dtype=np.float32)[data.y]
    classifier = PyTorchClassifier(
        model=case.model.eval(),
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=x.shape[1:],  # (3, 32, 32) for CIFAR-10
        nb_classes=data.num_classes,
        clip_values=(0.0, 1.0),
    )
    prep_s = time.perf_counter() - start
    if which == "art_ac":
        label, defence = "ART ActivationDefence (defaults)", ActivationDefence(classifier, x, y)
    else:
        pp = 0.1 if which == "art_ss" else 0.33
        label = f"ART SpectralSignatureDefense (expected_pp_poison={pp})"
        defence = SpectralSignatureDefense(classifier, x, y, expected_pp_poison=pp)
    start = time.perf_counter()
    _, is_clean = defence.detect_poison()
    method_s = time.perf_counter() - start
    flagged = np.asarray(is_clean) == 0
    row = {"method": label, "pass_s": prep_s, "method_s": method_s, "total_s": prep_s + method_s}
    return [{**row, **quality(mask, flagged)}]


def worker(name: str, args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _backdoor_case import backdoor_case

    case = backdoor_case(args.data_dir, device=args.device, progress=False)
    loaded_mb = peak_rss_mb()
    rows = run_ours(case, args.device) if name == "ours" else run_art(case, name)
    return {
        "worker": name,
        "samples": len(case.poisoned),
        "poison": int(case.poisoned.poison_mask.sum()),
        "model_id": case.model_id,
        "rss_after_loading_mb": loaded_mb,
        "peak_rss_mb": peak_rss_mb(),
        "rows": rows,
    }


def spawn(name: str, args: argparse.Namespace) -> dict:
    """Run one worker in a fresh interpreter and parse its result line."""
    cmd = [sys.executable, __file__, "--worker", name, "--device", args.device]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    print(f"running {name} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"worker {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(results: list[dict]) -> str:
    lines = [
        "| method | time (s) | of which pass / prep (s) | peak RSS (GiB) "
        "| precision | recall | F1 | FPR | AUROC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        rss = res["peak_rss_mb"] / 1024.0
        for r in res["rows"]:
            lines.append(
                f"| {r['method']} | {r['total_s']:.1f} | {r['pass_s']:.1f} | {rss:.2f} | "
                f"{fmt(r.get('precision'))} | {fmt(r.get('recall'))} | {fmt(r.get('f1'))} | "
                f"{fmt(r.get('fpr'), '.3f')} | {fmt(r.get('auroc'), '.3f')} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("POISONLAB_DATA"), help="CIFAR-10 folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/defenses.json")
    parser.add_argument("--methods", default=",".join(WORKERS), help=f"comma-separated subset of {WORKERS}")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(args.worker, args)), flush=True)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(WORKERS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; expected a subset of {WORKERS}")
    load_before = os.getloadavg()[0]
    results = [spawn(m, args) for m in methods]
    record = {
        "case": "cifar10, pattern backdoor airplane -> bird (benchmarks/_backdoor_case.py)",
        "environment": environment(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(results))


if __name__ == "__main__":
    main()
