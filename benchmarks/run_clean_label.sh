#!/usr/bin/env bash
# Regenerate the clean-label page from scratch: every committed clean-label run, then the page
# (benchmarks/clean_label_table.py; tests/reporting/test_clean_label_doc.py checks it).
#
# Usage: bash benchmarks/run_clean_label.sh [OUT_DIR]     (default runs/clean_label)
#   DOCS=0   leave docs/results/ alone (the page is written to OUT_DIR/clean_label.md)
# Needs ../shared/datasets/cifar10-jpeg (or POISONLAB_DATA). Stopped and started again with the
# same OUT_DIR it goes on where it stopped (each run's cells.jsonl keeps its finished trials).
# Time on 2 idle cores, from the runs' records (crafting plus victim training; the surrogates'
# pre-training, about 10 minutes each, and the defenses come on top): transfer-linear ~15 min,
# transfer-finetune ~40 min, its placebo (50 trials) ~50 min, scratch ~66 min, feature collision
# at the chapter's settings ~5 min.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/clean_label}"
data="${POISONLAB_DATA:-../shared/datasets/cifar10-jpeg}"
mkdir -p "$out"
declare -A configs=(
  [transfer-linear]=experiments/clean_label/transfer-linear-cifar10.yaml
  [transfer-finetune]=experiments/clean_label/transfer-finetune-cifar10.yaml
  [scratch]=experiments/clean_label/scratch-cifar10.yaml
  [feature-collision-chapter]=experiments/chapter/feature-collision-chapter.yaml
  [transfer-finetune-placebo]=experiments/clean_label/transfer-finetune-placebo.yaml
)
order=(transfer-linear transfer-finetune scratch feature-collision-chapter transfer-finetune-placebo)
for name in "${order[@]}"; do
  echo "=== $name $(date -u +%H:%M:%S)"
  .venv/bin/poisonlab clean-label "${configs[$name]}" --data-dir "$data" --out "$out/$name" --quiet --resume
done
folders=()
for name in "${order[@]}"; do
  if [[ "${DOCS:-1}" == "1" ]]; then
    mkdir -p "docs/results/clean_label/$name"
    cp "$out/$name"/{results.json,cells.jsonl,report.md} "docs/results/clean_label/$name"/
    folders+=("docs/results/clean_label/$name")
  else
    folders+=("$out/$name")
  fi
done
page=docs/results/clean_label.md
[[ "${DOCS:-1}" == "1" ]] || page="$out/clean_label.md"
.venv/bin/python benchmarks/clean_label_table.py "${folders[@]}" --out "$page" > /dev/null
echo "page: $page"
