"""The case of ``benchmarks/crafting.py``: the surrogate, poisons, victim and crafting set.

:func:`prepare_case` runs in a child of its own and saves the crafting set; :class:`Case` loads it
in each method's child. Not a module of a package: ``crafting.py`` puts ``benchmarks/`` on
``sys.path``.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import numpy as np
from _machine import environment

ATTACKS = ("hidden_trigger", "feature_collision", "clean_label_backdoor", "gradient_matching")
EPS = 16 / 255
TARGET, SOURCE = "bird", "airplane"
TRANSFER_YAML = Path(__file__).resolve().parents[1] / "experiments/clean_label/transfer-linear-cifar10.yaml"


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set size (``ru_maxrss``, KiB on Linux) in MiB."""
    return resource.getrusage(who).ru_maxrss / 1024.0


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
        from poisonlab.experiments.clean_label import benchmark_data
        from poisonlab.experiments.clean_label.config import load_clean_label
        from poisonlab.experiments.common.cache import baseline_key, cached_model
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
