#!/usr/bin/env bash
# Regenerate the clean-label page from scratch: every committed clean-label run, then the page
# (benchmarks/clean_label_table.py; tests/reporting/test_clean_label_doc.py checks it).
#
# Usage: bash benchmarks/run_clean_label.sh [OUT_DIR]     (default runs/clean_label)
#   DOCS=0      leave docs/results/ alone (the page is written to OUT_DIR/clean_label.md)
#   ONLY="a b"  run only these (names below); with DOCS=1 the page still reads every committed run
#   FC_SEEDS=5  seeds of feature-collision-chapter (OUT_DIR/NAME/seed-K each, pooled)
# Needs ../shared/datasets/cifar10-jpeg (or POISONLAB_DATA). Stopped and started again with the
# same OUT_DIR it goes on where it stopped (each run's cells.jsonl keeps its finished trials).
# Time on 2 idle cores, from the runs' records (crafting plus victim training; the surrogates'
# pre-training, about 10-18 minutes each, and the defenses come on top): transfer-linear (50
# trials; the committed run resumed at trial 12, 1.2-4 min a trial) ~1-2.5 h, transfer-finetune ~40 min, its placebo (50
# trials) ~50 min, scratch ~66 min, feature collision at the chapter's settings ~5 min per seed
# (each seed pre-trains its own surrogate).
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
declare -A seeds=([feature-collision-chapter]="${FC_SEEDS:-5}")
order=(transfer-linear transfer-finetune scratch feature-collision-chapter transfer-finetune-placebo)
read -r -a chosen <<< "${ONLY:-${order[*]}}"
for name in "${chosen[@]}"; do
  [[ -n "${configs[$name]:-}" ]] || { echo "error: no clean-label run named $name" >&2; exit 2; }
  several=()
  [[ -z "${seeds[$name]:-}" ]] || several=(--seeds "${seeds[$name]}")
  echo "=== $name $(date -u +%H:%M:%S)"
  .venv/bin/poisonlab clean-label "${configs[$name]}" --data-dir "$data" --out "$out/$name" --quiet --resume "${several[@]}"
done

# one run's records into its docs folder, replaced whole (a pooled run: its seed-K folders too)
copy_run() {
  local from="$1" dest="$2"
  rm -rf "$dest" && mkdir -p "$dest"
  if [[ -f "$from/results_pooled.json" ]]; then
    cp "$from"/{results_pooled.json,report_pooled.md} "$dest"/
    for seed_dir in "$from"/seed-*; do
      mkdir -p "$dest/$(basename "$seed_dir")"
      cp "$seed_dir"/{results.json,cells.jsonl,report.md} "$dest/$(basename "$seed_dir")"/
    done
  else
    cp "$from"/{results.json,cells.jsonl,report.md} "$dest"/
  fi
}

folders=()
for name in "${order[@]}"; do
  if [[ "${DOCS:-1}" == "1" ]]; then
    [[ " ${chosen[*]} " != *" $name "* ]] || copy_run "$out/$name" "docs/results/clean_label/$name"
    folders+=("docs/results/clean_label/$name")
  elif [[ -d "$out/$name" ]]; then
    folders+=("$out/$name")
  fi
done
page=docs/results/clean_label.md
[[ "${DOCS:-1}" == "1" ]] || page="$out/clean_label.md"
.venv/bin/python benchmarks/clean_label_table.py "${folders[@]}" --out "$page" > /dev/null
echo "page: $page"
