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
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ATTACKS = ("hidden_trigger", "feature_collision", "clean_label_backdoor", "gradient_matching")
FULL_STEPS = {
    "hidden_trigger": 300,
    "feature_collision": 200,
    "clean_label_backdoor": 10,
    "gradient_matching": 240,
}
METHODS = tuple([m for a in ATTACKS for m in (f"ours_{a}", f"art_{a}")] + [f"ours_full_{a}" for a in ATTACKS])
EPS = 16 / 255
TARGET, SOURCE = "bird", "airplane"
TRANSFER_YAML = Path(__file__).resolve().parents[1] / "experiments/clean_label/transfer-linear-cifar10.yaml"
RESULT_PREFIX = "RESULT "


# ------------------------------------------------------------------------------------ helpers
def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size (``ru_maxrss``, KiB on Linux) in MiB."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def split_method(method: str) -> tuple[str, str, bool]:
    """``"ours_full_gradient_matching"`` -> ("ours", "gradient_matching", True)."""
    lib, rest = method.split("_", 1)
    full = rest.startswith("full_")
    return lib, rest[5:] if full else rest, full


def trigger_fn():
    from poisonlab.attacks.hidden_trigger import chapter_patch_trigger

    return chapter_patch_trigger()  # 8x8 htbd.png at (H - 13, W - 13) = (19, 19) on 32x32


def trigger_mask(shape_hwc: tuple[int, int, int]) -> np.ndarray:
    """(H, W) bool: the pixels the trigger can change (found by stamping black and white images)."""
    trig = trigger_fn()
    black = np.zeros((1, *shape_hwc), np.uint8)
    white = np.full((1, *shape_hwc), 255, np.uint8)
    return ((trig(black) != black) | (trig(white) != white))[0].any(axis=-1)


def art_trigger(x: np.ndarray) -> np.ndarray:
    """Our trigger for ART's float NCHW batches; pixels outside the patch are returned untouched
    (our float path would floor them to 8 bits, which is not part of ART's attack)."""
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    stamped = trigger_fn()(nhwc).transpose(0, 3, 1, 2)
    mask = trigger_mask(nhwc.shape[1:])[None, None]
    return np.where(mask, stamped, x).astype(x.dtype)


def linf_255(poisons: np.ndarray, originals_u8: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Largest |poison - original| on the 0-255 scale over all (or the ``mask``-ed out) pixels.

    ``poisons`` is uint8 NHWC or float NHWC in [0, 1]; NaNs are ignored (None when all are NaN).
    """
    p = poisons.astype(np.float64) * (255.0 if poisons.dtype != np.uint8 else 1.0)
    d = np.abs(p - originals_u8.astype(np.float64))
    if mask is not None:
        d = d[:, ~mask, :]
    if d.size == 0 or np.all(np.isnan(d)):
        return None
    return float(np.nanmax(d))


# ---------------------------------------------------------------------------------- the case
def prepare_case(spec: dict) -> dict:
    """Load the surrogate (training it if it is not cached), pick poisons and victim, and save
    the crafting set to ``spec["case_path"]`` so each child loads only what it needs.

    Runs in a child of its own: Linux copies a process's ``ru_maxrss`` high-water mark into
    its children (fork keeps it, exec does not reset it), so the parent must stay small or every
    method would report at least the parent's peak.
    """
    from poisonlab.data.catalog import load_splits
    from poisonlab.inference import predict

    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    data_dir, poisons = spec["data_dir"], spec["poisons"]
    splits = load_splits("cifar10", data_dir=data_dir, seed=0)
    info: dict = {}
    if spec["random_model"]:
        model = random_model()
        info.update(kind="random SimpleCifarCNN (torch.manual_seed(0)); for testing the script only")
    else:
        from poisonlab.data.dataset import Splits
        from poisonlab.experiments.build import baseline_key, cached_model
        from poisonlab.experiments.clean_label import benchmark_data
        from poisonlab.experiments.clean_label_config import load_clean_label
        from poisonlab.models.store import poisonlab_home

        cfg = load_clean_label(TRANSFER_YAML)
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"data_dir": data_dir})})
        pre, _train, evaluation, trusted = benchmark_data(cfg)
        model_dir = poisonlab_home() / "baselines" / baseline_key(pre, cfg.pretrain_config())
        if not (model_dir / "model.json").is_file():
            print(
                f"surrogate not cached: training it into {model_dir} (about 10 minutes on 2 cores)",
                file=sys.stderr,
                flush=True,
            )
        model, model_id, _, cached = cached_model(
            Splits(train=pre, val=trusted, test=evaluation),
            cfg.pretrain_config(),
            device="cpu",
            progress=False,
            name=f"{cfg.name}-surrogate",
        )
        if not (model_dir / "model.json").is_file():  # pragma: no cover - cached_model wrote it
            raise SystemExit(f"expected the surrogate under {model_dir}")
        info.update(
            kind=f"chapter CNN pre-trained by {TRANSFER_YAML.name}",
            model_id=model_id,
            model_dir=str(model_dir),
            was_cached=cached,
            pretrain_size=len(pre),
        )
    model.eval()
    train, test = splits.train, splits.test
    tgt, src = train.class_index(TARGET), train.class_index(SOURCE)
    planes_test = np.flatnonzero(test.y == src)
    correct = predict(model, test.x[planes_test], device="cpu") == src
    victim = int(planes_test[np.argmax(correct)]) if correct.any() else int(planes_test[0])
    rng = np.random.default_rng(0)
    birds = np.flatnonzero(train.y == tgt)
    chosen = np.sort(rng.choice(birds, size=poisons, replace=False))
    extra = int(rng.choice(np.setdiff1d(birds, chosen)))
    craft_idx = np.sort(np.concatenate([chosen, np.flatnonzero(train.y == src)]))
    np.savez(
        spec["case_path"],
        x=train.x[craft_idx],
        y=train.y[craft_idx],
        class_names=np.array(train.class_names),
        victim=test.x[victim],
        extra_bird=train.x[extra],
    )
    return {
        "surrogate": info,
        "victim_test_index": victim,
        "victim_classified_correctly": bool(correct.any()),
        "poison_train_indices": chosen.tolist(),
        "extra_bird_train_index": extra,
        "crafting_set_size": int(craft_idx.size),
        "source_pool_size": int(np.sum(train.y == src)),
        "environment": environment(),
    }


def random_model():
    import torch

    from poisonlab.models.simple_cnn import SimpleCifarCNN

    torch.manual_seed(0)
    return SimpleCifarCNN(input_shape=(32, 32, 3), num_classes=10).eval()


class Case:
    """What a child needs: the crafting set, victim, classes and the surrogate."""

    def __init__(self, spec: dict) -> None:
        from poisonlab.data.dataset import Dataset

        z = np.load(spec["case_path"])
        self.craft = Dataset(
            x=z["x"],
            y=z["y"],
            class_names=tuple(str(c) for c in z["class_names"]),
            source="cifar10:train",
            name="crafting-case",
        )
        self.victim, self.extra_bird = z["victim"], z["extra_bird"]
        self.tgt, self.src = self.craft.class_index(TARGET), self.craft.class_index(SOURCE)
        self.birds = np.flatnonzero(self.craft.y == self.tgt)  # the P poisons, in order
        if spec["model_dir"] is None:
            self.model = random_model()
        else:
            from poisonlab.models.checkpoint import load_model

            self.model = load_model(spec["model_dir"])[0].eval()


# ------------------------------------------------------------------------------ objectives
def objective(attack: str, case: Case):
    """poisonlab's CraftReport objective of ``attack``: f(x, base) -> float, float NCHW tensors."""
    import torch
    import torch.nn.functional as F

    from poisonlab.attacks.crafting import Surrogate

    if attack == "gradient_matching":
        from poisonlab.attacks.gradient_matching import GradientMatching, _adversarial_direction

        gm = GradientMatching(
            model=case.model, victims=case.victim[None], target=case.tgt, count=len(case.birds), eps=EPS
        )
        m = gm._matcher(case.craft)
        m.t_hat = _adversarial_direction(m, case.victim[None], case.tgt)
        return lambda x, base: m.loss(x, torch.full((x.shape[0],), case.tgt, dtype=torch.long))
    sur = Surrogate(case.model, device="cpu")
    if attack == "hidden_trigger":
        from poisonlab.attacks.hidden_trigger import HiddenTriggerBackdoor

        pool = sur.batched_features(trigger_fn()(case.craft.x[case.craft.y == case.src]))
        return lambda x, base: HiddenTriggerBackdoor._nearest_loss(sur, x, pool)
    if attack == "feature_collision":
        from poisonlab.attacks.feature_collision import _objective

        t_feat = sur.batched_features(case.victim[None]).mean(0, keepdim=True)
        beta = 256.0 * (t_feat.shape[1] / float(np.prod(case.victim.shape))) ** 2

        def fc(x, base):  # watermark None: the proximal centre is the original base
            return float(_objective(sur, x, t_feat, base, beta, with_grad=False)[0].mean())

        return fc

    def neg_ce(x, base):  # clean-label backdoor
        with torch.no_grad():
            y = torch.full((x.shape[0],), case.tgt, dtype=torch.long)
            return -float(F.cross_entropy(sur.logits(x), y))

    return neg_ce


def nchw(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in [0, 1] (ART's input)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


def to_t(x: np.ndarray):
    """float32 NCHW or uint8 NHWC numpy -> float32 NCHW torch tensor in [0, 1]."""
    import torch

    return torch.from_numpy(nchw(x) if x.dtype == np.uint8 else np.ascontiguousarray(x, dtype=np.float32))


# ---------------------------------------------------------------------------------- workers
def run_ours(attack: str, steps: int, case: Case) -> dict:
    from poisonlab.attacks.clean_label_backdoor import CleanLabelBackdoor
    from poisonlab.attacks.feature_collision import FeatureCollision
    from poisonlab.attacks.gradient_matching import GradientMatching
    from poisonlab.attacks.hidden_trigger import HiddenTriggerBackdoor

    common = {
        "model": case.model,
        "target": TARGET,
        "count": len(case.birds),
        "eps": EPS,
        "steps": steps,
        "device": "cpu",
    }
    if attack == "hidden_trigger":
        atk = HiddenTriggerBackdoor(**common, source=SOURCE, trigger=trigger_fn(), trigger_name="patch8")
    elif attack == "feature_collision":
        atk = FeatureCollision(**common, victims=case.victim[None], watermark=None)
    elif attack == "clean_label_backdoor":
        atk = CleanLabelBackdoor(**common, trigger=trigger_fn(), trigger_name="patch8")
    else:
        atk = GradientMatching(**common, victims=case.victim[None], restarts=1)
    start = time.perf_counter()
    result = atk.poison(case.craft)
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "steps_run": steps}
    idx = np.flatnonzero(result.dataset.poison_mask)
    poisons, originals = result.dataset.x[idx], case.craft.x[idx]
    rep = result.report
    out.update(
        poisons=int(idx.size),
        same_poisons_as_case=bool(np.array_equal(idx, case.birds)),
        loss_initial=rep.loss_initial,
        loss_final=rep.loss_final,
        report=rep.to_dict(),
        finite=True,
        nan_count=0,  # uint8 output; the attacks raise instead of writing NaN
        max_linf=float(rep.max_linf),
        max_linf_stored=float(rep.max_linf),
    )
    mask = trigger_mask(case.craft.image_shape) if attack == "clean_label_backdoor" else None
    out["max_linf_perturbation"] = linf_255(poisons, originals, mask)
    # check: this script's evaluation of the objective reproduces the report's number
    f = objective(attack, case)
    out["loss_final_recomputed"] = f(to_t(poisons), to_t(originals))
    return out


def run_art(attack: str, steps: int, case: Case) -> dict:
    import torch
    from art.attacks.poisoning import (
        FeatureCollisionAttack,
        GradientMatchingAttack,
        HiddenTriggerBackdoor,
        PoisoningAttackBackdoor,
        PoisoningAttackCleanLabelBackdoor,
    )
    from art.estimators.classification import PyTorchClassifier

    np.random.seed(0)
    torch.manual_seed(0)
    n, k = len(case.birds), case.craft.num_classes
    onehot = np.eye(k, dtype=np.float32)
    start = time.perf_counter()
    classifier = PyTorchClassifier(
        model=case.model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(3, 32, 32),
        nb_classes=k,
        clip_values=(0.0, 1.0),
    )
    if attack == "hidden_trigger":
        x = nchw(case.craft.x)
    elif attack == "clean_label_backdoor":
        x = nchw(np.concatenate([case.craft.x[case.birds], case.extra_bird[None]]))
    else:
        x = nchw(case.craft.x[case.birds])
    prep_seconds = time.perf_counter() - start
    info: dict = {"prep_seconds": prep_seconds}
    backdoor = PoisoningAttackBackdoor(art_trigger)
    start = time.perf_counter()
    if attack == "hidden_trigger":
        atk = HiddenTriggerBackdoor(
            classifier,
            target=onehot[case.tgt],
            source=onehot[case.src],
            feature_layer="penultimate",
            backdoor=backdoor,
            eps=EPS,
            learning_rate=0.01,
            max_iter=steps,
            batch_size=n,
            poison_percent=1.0,
            stopping_threshold=0.0,
            verbose=False,
            print_iter=10**9,
        )
        poisons, idx = atk.poison(x, onehot[case.craft.y])
        idx = np.asarray(idx)
        steps_run = steps
    elif attack == "feature_collision":
        atk = FeatureCollisionAttack(
            classifier,
            target=nchw(case.victim[None]),
            feature_layer="penultimate",
            max_iter=steps,
            similarity_coeff=256.0,
            watermark=None,
            verbose=False,
        )
        calls = [0]
        forward_step = atk.forward_step

        def counted(poison):
            calls[0] += 1
            return forward_step(poison)

        atk.forward_step = counted  # count the iterations (ART may stop a poison early)
        poisons, _ = atk.poison(x)
        idx = np.arange(n)
        steps_run = calls[0] / n
        info["art_learning_rate"] = 500 * 255.0
    elif attack == "clean_label_backdoor":
        atk = PoisoningAttackCleanLabelBackdoor(
            backdoor,
            classifier,
            target=onehot[case.tgt],
            pp_poison=(n + 0.5) / (n + 1),
            eps=EPS,
            eps_step=2.5 * EPS / steps,
            max_iter=steps,
            num_random_init=1,
        )
        data, _ = atk.poison(x, np.repeat(onehot[case.tgt][None], n + 1, axis=0))
        idx = np.flatnonzero((data != x).reshape(len(x), -1).any(axis=1))  # the distinct poisoned rows
        poisons = data[idx]
        steps_run = steps
        info["pgd_batch_size"] = atk.attack.batch_size
    else:
        atk = GradientMatchingAttack(
            classifier, percent_poison=1.0, epsilon=EPS, max_trials=1, max_epochs=steps, verbose=0
        )
        data, _ = atk.poison(nchw(case.victim[None]), np.array([case.tgt]), x, case.craft.y[case.birds])
        idx = np.arange(n)  # percent_poison=1.0 of x_train = exactly the P birds: every row is a poison
        poisons = data
        steps_run = steps
        info["art_batch_size"] = atk.batch_size
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    originals_u8 = np.rint(x[idx] * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)  # exact: x = u8 / 255
    poisons_hwc = np.asarray(poisons, dtype=np.float32).transpose(0, 2, 3, 1)
    finite = bool(np.isfinite(poisons_hwc).all())
    mask = trigger_mask(case.craft.image_shape) if attack == "clean_label_backdoor" else None
    out = {
        "seconds": seconds,
        "peak_rss_mib": peak,
        "steps_run": steps_run,
        **info,
        "poisons": int(len(idx)),
        "selected": int(n),
        "finite": finite,
        "nan_count": int(np.isnan(poisons_hwc).sum()),
        "max_linf": linf_255(poisons_hwc, originals_u8),
        "max_linf_stored": linf_255(
            np.clip(np.rint(np.nan_to_num(poisons_hwc) * 255.0), 0, 255).astype(np.uint8), originals_u8
        ),
        "max_linf_perturbation": linf_255(poisons_hwc, originals_u8, mask),
    }
    if attack == "hidden_trigger":
        out["same_poisons_as_case"] = bool(np.array_equal(np.sort(idx), case.birds))
    elif attack == "clean_label_backdoor":
        out["same_poisons_as_case"] = False  # drawn with replacement from P + 1 birds
    else:
        out["same_poisons_as_case"] = True  # x is exactly the P birds
    try:
        f = objective(attack, case)
        out["loss_initial"] = f(to_t(originals_u8), to_t(originals_u8))
        out["loss_final"] = (
            f(to_t(np.asarray(poisons, dtype=np.float32)), to_t(originals_u8)) if finite else None
        )
    except Exception as exc:  # noqa: BLE001 - the evaluation must not hide the timing
        out["loss_error"] = f"{type(exc).__name__}: {exc}"
    return out


def worker(spec: dict) -> dict:
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    lib, attack, full = split_method(spec["method"])
    steps = spec["full_steps"][attack] if full else spec["compare_steps"]
    case = Case(spec)
    record = {
        "method": spec["method"],
        "library": "poisonlab" if lib == "ours" else "art",
        "attack": attack,
        "steps": steps,
        "torch_threads": torch.get_num_threads(),
        "rss_after_loading_mib": peak_rss_mib(),
    }
    try:
        record.update(run_ours(attack, steps, case) if lib == "ours" else run_art(attack, steps, case))
    except Exception as exc:  # noqa: BLE001 - an attack that raises is a result
        import traceback

        record.update(
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc()[-3000:],
            peak_rss_mib=peak_rss_mib(),
        )
    if record.get("seconds") is not None and record.get("steps_run"):
        record["seconds_per_step"] = record["seconds"] / record["steps_run"]
    lim = int(np.floor(EPS * 255 + 1e-6))
    if record.get("max_linf_perturbation") is not None:
        # ART's float output may sit on the boundary up to float32 rounding
        record["inside_eps"] = bool(record["finite"] and record["max_linf_perturbation"] <= lim + 1e-3)
    record["peak_rss_children_mib"] = peak_rss_mib(resource.RUSAGE_CHILDREN)
    return record


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
def _f(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def markdown(records: list[dict]) -> str:
    lines = [
        "| method | poisons | steps | seconds | s/step | peak RSS MiB | loss initial -> final "
        "| max Linf (0-255) | finite | note |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in records:
        if r.get("timed_out"):
            lines.append(f"| {r['method']} | - | - | timed out | - | - | - | - | - | {r['error']} |")
            continue
        note = r.get("error", "")
        if len(note) > 120:
            note = note[:117] + "..."
        note = note.replace("|", "/").replace("\n", " ")
        loss = "-"
        if r.get("loss_initial") is not None:
            loss = f"{r['loss_initial']:.4g} -> {_f(r.get('loss_final'), '.4g')}"
        linf = _f(r.get("max_linf"), ".1f")
        if r.get("max_linf_perturbation") is not None and r.get("max_linf") != r.get("max_linf_perturbation"):
            linf += f" ({r['max_linf_perturbation']:.1f} outside trigger)"
        if "inside_eps" in r:
            linf += "" if r["inside_eps"] else " > eps"
        steps = r.get("steps_run", r.get("steps"))
        steps_s = _f(steps, "g") if isinstance(steps, (int, float)) else "-"
        finite = "-" if "finite" not in r else ("yes" if r["finite"] else f"NO ({r.get('nan_count')} NaN)")
        lines.append(
            f"| {r['method']} | {r.get('poisons', '-')} | {steps_s} | {_f(r.get('seconds'))} | "
            f"{_f(r.get('seconds_per_step'), '.3f')} | {_f(r.get('peak_rss_mib'), '.0f')} | "
            f"{loss} | {linf} | {finite} | {note} |"
        )
    ratios = comparison(records)
    if ratios:
        lines += [
            "",
            "| attack | ART / poisonlab, s per step | ART / poisonlab, peak RSS |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {a} | {_f(v['time_ratio'], '.1f')}x | {_f(v['rss_ratio'], '.2f')}x |"
            for a, v in ratios.items()
        ]
    return "\n".join(lines)


def comparison(records: list[dict]) -> dict:
    by = {r["method"]: r for r in records}
    out = {}
    for a in ATTACKS:
        o, r = by.get(f"ours_{a}"), by.get(f"art_{a}")
        if not o or not r or o.get("error") or r.get("error"):
            continue
        out[a] = {
            "time_ratio": r["seconds_per_step"] / o["seconds_per_step"]
            if o.get("seconds_per_step")
            else None,
            "rss_ratio": r["peak_rss_mib"] / o["peak_rss_mib"],
        }
    return out


def environment() -> dict:
    import torch

    try:
        import art

        art_version = art.__version__
    except ImportError:  # pragma: no cover - ART is a benchmark-only dependency
        art_version = None
    cpu = platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "art": art_version,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }


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
