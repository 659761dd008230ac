#!/usr/bin/env bash
# Reproduce the chapter's experiments on CIFAR-10 (about one hour on 2 cores).
# Usage: bash benchmarks/run_chapter.sh [OUT_DIR]   (needs ../shared/datasets/cifar10-jpeg and ch4/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/chapter}"
mkdir -p "$out"
for name in rutan-finetune embraer-finetune control-finetune art-pattern art-single-pixel art-image-insert \
            cyan-square-replace cyan-square-add rutan-retrain; do
  echo "=== $name $(date -u +%H:%M:%S)"
  .venv/bin/poisonlab run "experiments/chapter/$name.yaml" --out "$out/$name" --quiet
done
.venv/bin/python benchmarks/chapter_table.py "$out" --out docs/results/chapter.md
