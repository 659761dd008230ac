#!/usr/bin/env bash
# Choose the clean CIFAR-10 recipe on the validation split: the five candidates of BENCHMARKS.md
# ("Choosing the clean recipe on the validation split"), one seed each, every one evaluated on the
# 10,000 validation images after every epoch and on the test split once, after its last epoch
# (recorded, never read by the choice). Then the table (benchmarks/recipe_table.py).
#
# Usage: bash benchmarks/run_recipe_selection.sh [OUT_DIR]   (default benchmarks/results/recipe_selection)
#   SEED=0   the training seed of every candidate
# Needs ../shared/datasets/cifar10-jpeg (or POISONLAB_DATA). Time: about 13 minutes per candidate on
# 2 idle cores, about 30 two at a time on one thread each (how the committed records ran).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results/recipe_selection}"
seed="${SEED:-0}"
data="${POISONLAB_DATA:-../shared/datasets/cifar10-jpeg}"
mkdir -p "$out"
run() {  # NAME [train_cifar10.py overrides...]; a finished candidate is kept
  local name=$1; shift
  if [[ -f "$out/$name.json" ]]; then echo "=== $name: kept"; return; fi
  echo "=== $name $(date -u +%H:%M:%S)"
  .venv/bin/python benchmarks/train_cifar10.py --data-dir "$data" --seeds "$seed" --out "$out/$name.json" "$@"
}
run default12
run default-10epochs --epochs 10
run lr02-ls01 --epochs 10 --set lr=0.2 --set label_smoothing=0.1
run lr01-ls01-b128 --epochs 10 --batch-size 128 --set lr=0.1 --set label_smoothing=0.1
run dropout-lr02-ls01 --epochs 10 --set 'model={"arch":"simple-cifar10","dropout":[0.1,0.2,0.2,0.2]}' \
    --set lr=0.2 --set label_smoothing=0.1
.venv/bin/python benchmarks/recipe_table.py "$out"
