"""Every table of docs/results/*.md with a JSON source is regenerated from that JSON and must match.

The pages whose figures are still typed by hand must say so in docs/results/README.md
("hand-typed, not yet checked"), so that nothing pretends to be checked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from poisonlab.reporting.chapter_doc import chapter_markdown, load_runs
from poisonlab.reporting.clean_label_doc import doc_tables
from poisonlab.reporting.results_docs import (
    load_json,
    markdown_table,
    markdown_tables,
    matrix_detection_table,
    matrix_mitigation_table,
    missing_tables,
)

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
#: pages whose every table is regenerated below
CHECKED = {"chapter.md", "clean_label.md", "defenses.md"}
CLEAN_LABEL_RUNS = ("transfer-linear", "transfer-finetune", "scratch")


def test_chapter_page_is_the_generator_output() -> None:
    page = (RESULTS / "chapter.md").read_text(encoding="utf-8")
    assert page == chapter_markdown(load_runs(RESULTS / "chapter")), (
        "docs/results/chapter.md differs from its JSON: run "
        "python benchmarks/chapter_table.py docs/results/chapter --out docs/results/chapter.md"
    )


def test_clean_label_page_holds_every_generated_table() -> None:
    runs = [load_json(RESULTS / "clean_label" / name / "results.json") for name in CLEAN_LABEL_RUNS]
    page = (RESULTS / "clean_label.md").read_text(encoding="utf-8")
    assert missing_tables(page, doc_tables(runs)) == []
    assert len(markdown_tables(page)) == 1 + len(doc_tables(runs))  # + the attacks' description table


def test_defenses_page_holds_every_generated_table() -> None:
    cifar = load_json(RESULTS / "defenses" / "cifar10" / "matrix.json")
    digits = load_json(RESULTS / "defenses" / "digits" / "matrix.json")
    generated = [
        matrix_detection_table(cifar),
        matrix_mitigation_table(cifar),
        matrix_detection_table(digits),
    ]
    page = (RESULTS / "defenses.md").read_text(encoding="utf-8")
    assert missing_tables(page, generated) == []
    assert len(markdown_tables(page)) == len(generated)


def test_every_other_page_is_listed_as_hand_typed() -> None:
    readme = (RESULTS / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| [`")}
    for page in sorted(p.name for p in RESULTS.glob("*.md") if p.name != "README.md"):
        row = next((line for key, line in rows.items() if f"[`{page}`]" in key), None)
        assert row is not None, f"{page} has no row in the reviewer's checklist of docs/results/README.md"
        if page not in CHECKED:
            assert "hand-typed, not yet checked" in row, page


def test_a_changed_digit_is_caught() -> None:
    table = markdown_table(["a", "b"], [["x", "0.123"]], ["l", "r"])
    assert missing_tables(f"text\n\n{table}\n\nmore", [table]) == []
    assert missing_tables(f"text\n\n{table.replace('0.123', '0.124')}\n", [table]) == [table]


def test_markdown_table_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["a", "b"], [["only one"]])


def test_the_figures_quoted_in_the_readme_are_those_of_figures_results_json() -> None:
    """The trigger figures (4.11-4.13) are quoted in prose: each number must be the JSON's."""
    readme = " ".join((RESULTS / "README.md").read_text(encoding="utf-8").split())
    figs = {f["name"]: f for f in load_json(RESULTS / "figures" / "results.json")["figures"]}
    single, pattern = figs["fig-4.11-single-pixel"], figs["fig-4.12-pattern"]
    ours, theirs = figs["fig-4.13-image-insert"], figs["fig-4.13-image-insert-alert-white"]
    box = ours["bbox"]
    quoted = [
        f"Single pixel {single['changed_pixels']} pixel ({single['changed_values']} values, "
        f"L2 {single['l2']:.2f})",
        f"pattern {pattern['changed_pixels']} pixels ({pattern['changed_values']} values, "
        f"L2 {pattern['l2']:.2f})",
        f"our icon {ours['changed_pixels']} pixels inside rows {box['top']}-{box['bottom']} / "
        f"cols {box['left']}-{box['right']} (L2 {ours['l2']:.2f}, Linf {ours['linf']:.1f})",
        f"the chapter's icon {theirs['changed_pixels']} pixels (L2 {theirs['l2']:.2f})",
    ]
    for text in quoted:
        assert text in readme, text
