"""Collect the chapter experiments' results.json files into one Markdown table beside the book's figures.

python benchmarks/chapter_table.py runs/chapter --out docs/results/chapter.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# The book's / notebook's figures (chapter text and the ART notebook it follows).
BOOK = {
    "rutan-finetune": "accuracy ~0.68, ~399 airplanes -> bird",
    "rutan-retrain": "~25 airplanes -> bird",
    "embraer-finetune": "(not reported)",
    "art-single-pixel": "clean 0.85, ASR 0.89",
    "art-pattern": "clean 0.86, ASR 0.93 (really single-pixel: notebook bug)",
    "art-image-insert": "clean 0.86, ASR 0.89",
    "cyan-square-add": "(not reported; saturation problem described)",
    "cyan-square-replace": "(not reported)",
}


def _stat(summary: dict, key: str, digits: int = 4) -> str:
    stat = summary["poisoned"].get(key)
    if stat is None:
        return "-"
    if len(stat["values"]) == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def row(name: str, data: dict) -> list[str]:
    s = data["summary"]
    run = data["runs"][0]
    clean = s["clean"]
    return [
        name,
        f"{run['num_poison']} ({run['poison_rate']:.2%})",
        data["config"]["integration"],
        str(len(data["runs"])),
        f"{clean['clean_accuracy']:.4f}",
        _stat(s, "clean_accuracy"),
        _stat(s, "attack_success_rate"),
        f"{clean.get('source_to_target', 0):.0f} -> {_stat(s, 'source_to_target', 1)}",
        BOOK.get(name, ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    header = [
        "experiment",
        "poison (share)",
        "integration",
        "seeds",
        "clean model acc",
        "poisoned model acc",
        "ASR",
        "test airplanes -> bird (clean -> poisoned)",
        "book",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for path in sorted(args.runs.glob("*/results.json")):
        data = json.loads(path.read_text())
        lines.append("| " + " | ".join(row(path.parent.name, data)) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
