"""Benchmark: crafting speed and memory of the four clean-label attacks, poisonlab vs IBM ART 1.20.1.

The case (CIFAR-10, CPU): the surrogate is the chapter CNN pre-trained by
``experiments/clean_label/transfer-linear-cifar10.yaml`` (loaded exactly as the clean-label
runner's ``_prepare`` does, through ``cached_model``: cached under ``$POISONLAB_HOME/baselines``,
trained on the first run, about 10 minutes on 2 cores). The poisons are ``--poisons`` (250)
"bird" images of the 40,000-image training split, drawn once with ``default_rng(0)``; the victim
is the first test "airplane" the surrogate classifies correctly; the hidden-trigger source class
is "airplane"; ``eps = 16/255``; the trigger of both backdoors is ``chapter_patch_trigger()``
(the shipped 8x8 checker at row/column 19). Every method sees the same crafting set: the chosen
birds plus every training airplane (the hidden-trigger source pool).

Methods, each in its own subprocess (one after the other) so that peak memory (``ru_maxrss``)
is per method; the parent only collects one JSON line per child:

* ``ours_<attack>`` / ``art_<attack>``, for ``hidden_trigger``, ``feature_collision``,
  ``clean_label_backdoor`` and ``gradient_matching``: BOTH libraries run ``--compare-steps`` K
  (20) optimisation steps on the same poisons, so seconds per step and memory compare at equal
  work (ART is too slow for its full step counts on a CPU). A "step" is one update of every
  poison.
* ``ours_full_<attack>``: poisonlab with the attack's full step count (hidden trigger 300,
  feature collision 200, clean-label backdoor 10, gradient matching 240 with one restart) - the
  "250 poisons in minutes" claim.

poisonlab runs the attack classes with their defaults, except: feature collision with
``watermark=None`` and ``eps=16/255`` (the transfer config's row). ART wraps the same model the
ordinary way, ``PyTorchClassifier(model, CrossEntropyLoss(), input_shape=(3, 32, 32),
nb_classes=10, clip_values=(0, 1))`` on float32 NCHW images in [0, 1] (the model normalises
inside), feature layer ``"penultimate"`` (the top-level module whose output is
``model.features``), and:

* ``HiddenTriggerBackdoor``: ``eps=16/255, learning_rate=0.01, max_iter=K``,
  ``poison_percent=1.0`` of the P birds in ``x``, ``batch_size=P`` (one batch, as ours: ART's
  default 100 would run ``max_iter`` per batch), ``stopping_threshold=0`` (its default 10 may stop
  early; 0 keeps the step count equal);
* ``FeatureCollisionAttack``: ``max_iter=K, similarity_coeff=256, watermark=None``, the P birds
  as ``x``, the victim as ``target``, ART's default ``learning_rate`` (500 * 255). ART's attack
  has no eps, so its poisons are NOT bounded by 16/255 (recorded as such). It crafts one poison
  at a time; its steps are counted (it may stop early);
* ``PoisoningAttackCleanLabelBackdoor``: ``eps=16/255, eps_step=2.5 * eps / K`` (ours' default
  step), ``max_iter=K, num_random_init=1`` (ours starts at a random point), the backdoor a
  ``PoisoningAttackBackdoor`` stamping our trigger. ``pp_poison`` must be < 1, so ``x`` is the P
  birds plus one more and ``pp_poison=(P + 0.5) / (P + 1)`` selects P indices - with
  replacement (``np.random.choice``), so fewer distinct images are poisoned (recorded). ART's PGD
  is untargeted against the predicted label and uses its default batch of 32;
* ``GradientMatchingAttack``: ``epsilon=16/255, max_epochs=K, max_trials=1,
  percent_poison=1.0`` of the P birds as ``x_train``, the victim with label bird as trigger,
  its default learning-rate schedule and batch size (128).

Recorded per method: seconds (ours: ``poison()``; ART: constructing the attack and ``poison()``,
with the float conversion and classifier wrapping separately as ``prep_seconds``), seconds per
step (those seconds / steps, so fixed costs such as ours' hidden-trigger features of the whole
triggered source pool are included), peak RSS of the child right after crafting (and of its
reaped children: ART's gradient matching forks a DataLoader worker every epoch; the case is
prepared in a child too, because Linux children inherit their parent's ``ru_maxrss``; the
parent's own peak, the floor of every child's, is recorded), torch threads, poisonlab's
objective of each attack (the ``CraftReport`` definition, lower is better for the attacker) at
the originals and at the crafted poisons - for ART evaluated by this script on ART's float
output; for ours recomputed as ``loss_final_recomputed`` to check the evaluation - and the largest
change on the 0-255 scale, whether it is inside eps (for the clean-label backdoor outside the
trigger patch) and whether every output is finite (ART issue #1252: NaN poisons). A per-method
``--timeout`` kills a hung child (and its process group) and records "timed out"; an exception
in an attack is recorded as the result.

Full run (writes the JSON and prints a Markdown table; not timed yet, expect tens of minutes on 2 cores)::

    POISONLAB_HOME=/tmp/plhome nice -n 10 .venv/bin/python benchmarks/crafting.py \\
        --data-dir /work/shared/datasets/cifar10-jpeg --out benchmarks/results/crafting.json \\
        --markdown benchmarks/results/crafting.md

Testing the script only (10 poisons, 2 steps; ``--random-model`` uses a randomly initialised
SimpleCifarCNN instead of the pre-trained surrogate, so those numbers mean nothing)::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/crafting.py --quick --random-model \\
        --threads 1 --data-dir /work/shared/datasets/cifar10-jpeg --out /tmp/crafting-quick.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
from _crafting_case import ATTACKS, EPS, SOURCE, TARGET, peak_rss_mib, prepare_case  # noqa: E402
from _crafting_methods import split_method, worker  # noqa: E402
from _crafting_report import comparison, markdown  # noqa: E402

FULL_STEPS = {
    "hidden_trigger": 300,
    "feature_collision": 200,
    "clean_label_backdoor": 10,
    "gradient_matching": 240,
}
METHODS = tuple([m for a in ATTACKS for m in (f"ours_{a}", f"art_{a}")] + [f"ours_full_{a}" for a in ATTACKS])
RESULT_PREFIX = "RESULT "


def prepare(spec: dict) -> dict:
    """Run :func:`prepare_case` in a child (its stderr - e.g. a training notice - passes through)."""
    print("preparing the case ...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, __file__, "--prepare", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"preparing the case failed (exit {proc.returncode})")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def spawn(method: str, spec: dict, timeout: float) -> dict:
    """Run one method in a fresh interpreter (own process group) and parse its result line."""
    cmd = [sys.executable, __file__, "--worker", json.dumps({**spec, "method": method})]
    print(f"running {method} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the child and e.g. its DataLoader workers
        stdout, stderr = proc.communicate()
        lib, attack, _ = split_method(method)
        return {
            "method": method,
            "library": "poisonlab" if lib == "ours" else "art",
            "attack": attack,
            "timed_out": True,
            "error": f"timed out after {timeout:g} s (killed)",
            "stderr_tail": stderr[-2000:],
        }
    wall = time.perf_counter() - start
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        lib, attack, _ = split_method(method)
        return {
            "method": method,
            "library": "poisonlab" if lib == "ours" else "art",
            "attack": attack,
            "error": f"child exited {proc.returncode} without a result",
            "stderr_tail": stderr[-4000:],
        }
    record = json.loads(lines[-1][len(RESULT_PREFIX) :])
    record["child_wall_seconds"] = wall
    return record


# ---------------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("POISONLAB_DATA"), help="CIFAR-10 folder")
    parser.add_argument("--out", default="benchmarks/results/crafting.json")
    parser.add_argument("--markdown", default=None, help="also write the Markdown table here")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--compare-steps", type=int, default=20, help="steps of the ours_/art_ comparison")
    parser.add_argument("--poisons", type=int, default=250)
    parser.add_argument(
        "--quick", action="store_true", help="10 poisons, 2 steps everywhere: tests the script"
    )
    parser.add_argument(
        "--random-model",
        action="store_true",
        help="random SimpleCifarCNN instead of the pre-trained surrogate (script testing only)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1200.0, help="seconds per method before it is killed"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in each child")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    if args.prepare:
        print(RESULT_PREFIX + json.dumps(prepare_case(json.loads(args.prepare))), flush=True)
        return
    if args.quick:
        args.poisons, args.compare_steps = 10, 2
    full_steps = {a: 2 for a in ATTACKS} if args.quick else dict(FULL_STEPS)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; expected a subset of {METHODS}")
    if args.poisons < 1 or args.compare_steps < 1:
        raise SystemExit("--poisons and --compare-steps must be >= 1")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="crafting-bench-") as tmp:
        case_path = str(Path(tmp) / "case.npz")
        case = prepare(
            {
                "case_path": case_path,
                "data_dir": args.data_dir,
                "poisons": args.poisons,
                "random_model": args.random_model,
                "threads": args.threads,
            }
        )
        env = case.pop("environment")
        spec = {
            "case_path": case_path,
            "model_dir": case["surrogate"].get("model_dir"),
            "compare_steps": args.compare_steps,
            "full_steps": full_steps,
            "threads": args.threads,
        }
        record = {
            "case": (
                f"cifar10: {args.poisons} '{TARGET}' training images crafted against the surrogate; "
                f"victim = first test '{SOURCE}' it classifies correctly; HTBD source '{SOURCE}'; "
                f"eps 16/255; trigger chapter_patch_trigger() (8x8 at 19,19)"
            ),
            "environment": {**env, "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS")},
            "settings": {
                "poisons": args.poisons,
                "compare_steps": args.compare_steps,
                "full_steps": full_steps,
                "eps": EPS,
                "quick": args.quick,
                "random_model": args.random_model,
                "timeout_s": args.timeout,
                "threads": args.threads,
                "methods": methods,
                "data_dir": args.data_dir,
            },
            **case,
            # every child starts with the parent's ru_maxrss (a Linux quirk): this is the floor
            "parent_peak_rss_mib": peak_rss_mib(),
            "load_average_1min": {"before": os.getloadavg()[0]},
            "results": [],
        }
        for method in methods:
            record["results"].append(spawn(method, spec, args.timeout))
            record["comparison"] = comparison(record["results"])
            record["load_average_1min"]["after"] = os.getloadavg()[0]
            out_path.write_text(
                json.dumps(record, indent=2) + "\n"
            )  # after each method: partial results survive
    table = markdown(record["results"])
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
