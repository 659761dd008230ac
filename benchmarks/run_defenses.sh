#!/usr/bin/env bash
# Regenerate the defense matrices of docs/results/defenses.md from scratch, over seeds: each seed
# draws its own training share, trusted set and poison and trains its own clean, poisoned and
# mitigated models (`poisonlab matrix --seed K`), then the records are copied to
# docs/results/defenses/<name>-seeds/seed-K/ and the page is rebuilt from them
# (benchmarks/defenses_doc.py; tests/reporting/test_defenses_doc.py checks it).
#
# Usage: bash benchmarks/run_defenses.sh [OUT_DIR]         (default runs/defenses)
#   DIGITS_SEEDS=5   seeds 0..N-1 of the embedded-digits matrix (offline)
#   CIFAR_SEEDS=3    seeds 0..N-1 of the scaled CIFAR-10 matrix (0 skips it)
#   DOCS=0           leave docs/results/ alone (only OUT_DIR is written)
# Needs ../shared/datasets/cifar10-jpeg (or POISONLAB_DATA) and ../shared/datasets/ch4/ for CIFAR-10.
# Stopped and started again with the same OUT_DIR it goes on where it stopped (`--resume`: each
# seed's cells.jsonl keeps its finished rows).
# Time with one thread per run: digits about 4 minutes per seed (matrix.json's `seconds`, 5 seeds
# in 19 minutes); CIFAR-10 about 2 hours per seed at today's config (15 models of 6,000-6,621
# images from scratch and 19 defenses per row: a backdoor row took about 18 minutes on a core of
# its own, STRIP three quarters of its 4.4-minute scan), so the 3 seeds run about 6 hours.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/defenses}"
data="${POISONLAB_DATA:-../shared/datasets/cifar10-jpeg}"
declare -A seeds=([digits]="${DIGITS_SEEDS:-5}" [cifar10]="${CIFAR_SEEDS:-3}")
for name in digits cifar10; do
  [[ "${seeds[$name]}" -gt 0 ]] || continue
  where=()
  [[ "$name" == digits ]] || where=(--data-dir "$data")  # digits is embedded
  echo "=== $name, ${seeds[$name]} seeds, $(date -u +%H:%M:%S)"
  # OUT/<name>-seeds/seed-K per seed, then the combined report (matrix_seeds.json, report.md)
  .venv/bin/poisonlab matrix "experiments/defenses/matrix-$name.yaml" --out "$out/$name-seeds" \
    --seeds "${seeds[$name]}" --quiet --resume "${where[@]}"
done
if [[ "${DOCS:-1}" == "1" ]]; then
  for name in digits cifar10; do
    [[ "${seeds[$name]}" -gt 0 ]] || continue
    dest="docs/results/defenses/$name-seeds"
    rm -rf "$dest" && mkdir -p "$dest"
    cp "$out/$name-seeds"/report.md "$dest"/  # matrix_seeds.json is rebuilt from the seeds
    for seed_dir in "$out/$name-seeds"/seed-*; do
      mkdir -p "$dest/$(basename "$seed_dir")"
      cp "$seed_dir"/{matrix.json,report.md} "$dest/$(basename "$seed_dir")"/
    done
  done
  .venv/bin/python benchmarks/defenses_doc.py docs/results --dev-case benchmarks/results/defenses.json \
    --configs experiments/defenses --out docs/results/defenses.md > /dev/null
fi
