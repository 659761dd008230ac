"""BatchNorm recalibration on plain or augmented images: the same weights, three sets of statistics.

Training revision 1 (commit 8be58e4 to f7d8d62) recalibrated the BatchNorm statistics of a model
trained from scratch with one pass over the *plain* training images; revision 2 shows the pass the
training's crops and flips (:mod:`poisonlab.training.batchnorm`). The weights are the same either
way: in training mode BatchNorm normalises with the batch's own statistics, so the running ones
never enter a gradient, and the recalibration comes after the last step. This script takes saved
models (by default the five per-seed clean models of the committed chapter rows, trained by
revision 1) and measures each on the test set three ways:

* ``as_saved``: the statistics revision 1 wrote (plain training images);
* ``augmented``: recalibrated on the training images cropped (zero pad 4) and flipped, as revision 2 does;
* ``plain_again``: recalibrated on plain training images again (the spread a recalibration pass
  adds by itself: a different random 10,000-image subset).

Reproduce (BENCHMARKS.md, "BatchNorm recalibration")::

    .venv/bin/python benchmarks/bn_recalibration.py --data-dir ../shared/datasets/cifar10-jpeg \\
        --out benchmarks/results/bn_recalibration.json

It needs the models in the local registry (``poisonlab models list``): they are made by
``poisonlab run experiments/chapter/rutan-finetune.yaml --seeds 5`` at a revision-1 commit.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import environment  # noqa: E402

from poisonlab.data.catalog import load_splits
from poisonlab.evaluation import evaluate
from poisonlab.models.checkpoint import load_model
from poisonlab.models.store import ModelStore
from poisonlab.provenance import git_commit
from poisonlab.reporting.stats import mean_interval
from poisonlab.training import TrainConfig
from poisonlab.training.augment import crop_flip_of
from poisonlab.training.batchnorm import recalibrate_batchnorm
from poisonlab.training.options import AugmentConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = ROOT / "docs" / "results" / "chapter" / "rutan-finetune" / "results.json"


def _clean_models(results: Path) -> list[tuple[int, str]]:
    """(seed, clean model id) of every seed of a committed ``results.json``."""
    data = json.loads(results.read_text(encoding="utf-8"))
    return [(int(run["seed"]), str(run["clean_model"])) for run in data["runs"]]


def _recalibrated(model, images: torch.Tensor, *, augment: AugmentConfig | None, seed: int):
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    crop = crop_flip_of(augment, gen)
    recalibrate_batchnorm(
        out, images, batch_size=256, device=torch.device("cpu"), generator=gen, augment=crop
    )
    return out.eval()


def measure(model_dir: Path, splits, seed: int) -> dict:
    """Test accuracy of one saved model with its own, augmented and plain-again statistics."""
    model, card = load_model(model_dir)
    images = torch.from_numpy(np.ascontiguousarray(splits.train.x)).permute(0, 3, 1, 2)
    row = {"model": card.id, "train_config": card.train_config}
    row["as_saved"] = evaluate(model, splits.test, device="cpu").accuracy
    recipe = TrainConfig.model_validate(card.train_config).augment  # the crops it was trained on
    for name, augment in (("augmented", recipe), ("plain_again", None)):
        row[name] = evaluate(
            _recalibrated(model, images, augment=augment, seed=seed), splits.test, device="cpu"
        ).accuracy
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument(
        "--results", type=Path, default=DEFAULT_RESULTS, help="results.json naming the models"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    splits = load_splits("cifar10", data_dir=args.data_dir, seed=0)
    store, rows, start = ModelStore(), [], time.perf_counter()
    for seed, model_id in _clean_models(args.results):
        rows.append({"seed": seed, **measure(Path(store.get(model_id).path), splits, seed)})
        print(
            f"seed {seed}: "
            + ", ".join(f"{k} {rows[-1][k]:.4f}" for k in ("as_saved", "augmented", "plain_again"))
        )
    gains = [r["augmented"] - r["as_saved"] for r in rows]
    summary = {
        key: mean_interval([r[key] for r in rows]).to_dict()
        for key in ("as_saved", "augmented", "plain_again")
    } | {"augmented_minus_as_saved": mean_interval(gains).to_dict()}
    record = {
        "benchmark": "bn_recalibration",
        "commit": git_commit(),
        "command": " ".join(sys.argv),
        "machine": environment(),
        "parameters": {
            "results": str(args.results),
            "recalibration_batch": 256,
            "crop_padding": 4,
            "flip": True,
        },
        "seeds": [r["seed"] for r in rows],
        "models": rows,
        "summary": summary,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"mean gain of the augmented pass: {statistics.mean(gains):+.4f} over {len(gains)} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
