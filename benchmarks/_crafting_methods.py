"""The per-method child code of ``benchmarks/crafting.py``: the ``ours_*`` and ``art_*`` runners
and poisonlab's objective of each attack, evaluated on both libraries' poisons.

Not a module of a package: ``crafting.py`` puts ``benchmarks/`` on ``sys.path``.
"""

from __future__ import annotations

import resource
import time

import numpy as np
from _crafting_case import EPS, SOURCE, TARGET, Case, peak_rss_mib


# ------------------------------------------------------------------------------------ helpers
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
