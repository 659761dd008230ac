#!/usr/bin/env bash
# Regenerate every chapter table from scratch: each experiment over SEEDS seeds (default 5), each
# seed with its own clean model trained from scratch (`poisonlab run --seeds N`: baseline
# per_seed), then the results are copied to docs/results/chapter/ and chapter.md is rebuilt
# from them (benchmarks/chapter_table.py; tests/reporting/test_results_docs.py checks the page).
#
# Usage: bash benchmarks/run_chapter.sh [OUT_DIR]        (default runs/chapter)
#   SEEDS=5        seeds 0..SEEDS-1 per experiment
#   FRESH=1        a fresh POISONLAB_HOME (no cached clean model: really from scratch)
#   DOCS=0         leave docs/results/ alone (only OUT_DIR is written)
# Needs ../shared/datasets/cifar10-jpeg and ../shared/datasets/ch4/.
# Stopped and started again with the same OUT_DIR, it goes on where it stopped: an experiment
# with a results.json is kept, and one stopped between seeds keeps the seeds it finished
# (`poisonlab run --resume` checks each saved model is this config's before reusing it).
#
# Time on 2 idle cores (estimates from the single runs of docs/results/chapter, fast recipe
# ~13 min per clean or retrained model, a 5-epoch fine-tune on 44k images ~6 min at batch 128):
#   5 clean models (shared by every experiment through the cache)      ~65 min
#   6 fine-tunes on 44k images (3 ART triggers, 2 cyan squares, control) x 5 seeds   ~3 h
#   art-single-pixel-b32 and control-finetune-b32 (the notebook's batch 32) x 5 seeds ~1 h 50 min
#   rutan-finetune (26), its true-label placebo, rutan-finetune-27, embraer-finetune x 5 seeds  ~20 min
#   rutan-retrain (26), rutan-retrain-27 x 5 seeds (models from scratch) ~2 h 10 min
#   robustness-pattern, robustness-rutan, adversarial-training-pattern x 5 seeds (canaries, the
#     trigger test, every trigger on the photos; adversarial and plain fine-tunes)     ~1 h 30 min
#   the figures 4.11-4.13 (seconds) and feature collision at the chapter's settings (~15 min)
#   total about 10 hours (about 12 with batch 32, the notebook's, in every ART and cyan config).
# The per-seed clean models are the clean-retrain control of the retrain rows: the same recipe
# and seed without the Rutan photos.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/chapter}"
seeds="${SEEDS:-5}"
if [[ "${FRESH:-0}" == "1" ]]; then
  export POISONLAB_HOME="$out/poisonlab-home"
fi
mkdir -p "$out"
names=(control-finetune rutan-finetune rutan-finetune-placebo rutan-finetune-27 embraer-finetune art-pattern art-single-pixel
       art-image-insert cyan-square-replace cyan-square-add control-finetune-b32 art-single-pixel-b32
       rutan-retrain rutan-retrain-27
       robustness-pattern robustness-rutan adversarial-training-pattern)
for name in "${names[@]}"; do
  if [[ -f "$out/$name/results.json" ]]; then
    echo "=== $name: finished in an earlier run of this script, kept"
    continue
  fi
  echo "=== $name, $seeds seeds, $(date -u +%H:%M:%S)"
  .venv/bin/poisonlab run "experiments/chapter/$name.yaml" --out "$out/$name" --seeds "$seeds" --quiet --resume
done
.venv/bin/poisonlab figures experiments/chapter/trigger-figures.yaml --out "$out/trigger-figures" --overwrite  # seconds: drawn again
# feature collision at the chapter's settings over SEEDS seeds: a run of the clean-label page
# (with DOCS=1 copied to docs/results/clean_label/ and that page rebuilt; else OUT_DIR/clean_label)
FC_SEEDS="$seeds" ONLY=feature-collision-chapter bash benchmarks/run_clean_label.sh "$out/clean_label"
if [[ "${DOCS:-1}" == "1" ]]; then
  for name in "${names[@]}"; do
    dest="docs/results/chapter/$name"
    mkdir -p "$dest"
    cp "$out/$name"/results.json "$out/$name"/run.json "$out/$name"/report.md "$out/$name"/report.html "$dest"/
    cp "$out/$name"/*.png "$dest"/
  done
  .venv/bin/python benchmarks/chapter_table.py docs/results/chapter \
    --recalibration benchmarks/results/bn_recalibration.json --out docs/results/chapter.md
else
  .venv/bin/python benchmarks/chapter_table.py "$out" --out "$out/chapter.md"
fi
