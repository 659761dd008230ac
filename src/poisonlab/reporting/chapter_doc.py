"""``docs/results/chapter.md`` from the chapter runs' ``results.json`` files, intervals included.

Five tables, all computed from the JSON (``benchmarks/chapter_table.py`` writes them; the
figures are read by :mod:`poisonlab.reporting.chapter_data`):

1. the figures per experiment (mean ± sample std over seeds), the chapter text's and the
   notebook's figures beside them;
2. the intervals: Student t over seeds (two seeds or more) and Wilson over the test images of
   one model at the mean rate (the test-set sampling only; the seeds share one test set, so
   pooling them would count every test image once per seed);
3. the differences the docs interpret (poisoned vs clean model, attack vs the clean fine-tune
   control, ours vs the book's text and notebook), each with its interval and whether 0 (or
   the book's figure) is outside it;
4. the book's text and notebook figures against our intervals;
5. the external photos with and without each trigger.

Then the "Findings" section (:mod:`poisonlab.reporting.chapter_findings`): the sentences that
interpret these figures, filled in from the same runs, and the robustness-test sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from poisonlab.reporting.chapter_checks_doc import checks_sections
from poisonlab.reporting.chapter_data import (
    BOOK_TEXT,
    LABELS,
    NOTEBOOK,
    external_counts,
    figures,
    hits,
    load_runs,
)
from poisonlab.reporting.chapter_differences import CONTROL, PLACEBO, clean_model_sets, difference_table
from poisonlab.reporting.chapter_findings import findings_section
from poisonlab.reporting.chapter_revision import revision_section
from poisonlab.reporting.results_docs import markdown_table
from poisonlab.reporting.stats import mean_interval, rate_interval

__all__ = [
    "BOOK_TEXT",
    "COMMAND",
    "CONTROL",
    "NOTEBOOK",
    "PLACEBO",
    "chapter_markdown",
    "difference_table",
    "external_table",
    "figures",
    "load_runs",
]

#: Remarks per experiment (shown beside the figures).
NOTES = {
    "art-pattern": "the notebook applied the single-pixel trigger here (its bug)",
    "cyan-square-add": "saturation problem described, no figure",
    "control-finetune": "no poison: what the fine-tune alone costs",
    "rutan-finetune-placebo": "no mislabel: the Rutan photos as airplane, same fine-tune",
}
#: the command that writes ``docs/results/chapter.md`` (named on the page)
COMMAND = (
    "python benchmarks/chapter_table.py docs/results/chapter --recalibration "
    "benchmarks/results/bn_recalibration.json --out docs/results/chapter.md"
)


def _fmt(key: str, value: float) -> str:
    return f"{value:.1f}" if key == "source_to_target" else f"{value:.4f}"


def _mean_cell(key: str, pairs: list[tuple[float, int]] | None) -> str:
    if not pairs:
        return "-"
    stat = mean_interval([v for v, _ in pairs])
    if stat.single:
        return f"{stat.mean:.0f}" if key == "source_to_target" else f"{stat.mean:.4f}"
    return f"{_fmt(key, stat.mean)} ± {_fmt(key, stat.std)}"


def _reference(table: Mapping[str, Mapping[str, float]], name: str) -> str:
    ref = table.get(name, {})
    return ", ".join(f"{LABELS[k]} {v:g}" for k, v in ref.items()) or "-"


def figures_table(runs: Mapping[str, dict]) -> str:
    """Table 1: the figures per experiment beside the book's text and notebook."""
    rows = []
    for name, data in runs.items():
        f, run = figures(data), data["runs"][0]
        s2t = f"{_mean_cell('source_to_target', f['clean'].get('source_to_target'))} -> "
        s2t += _mean_cell("source_to_target", f["poisoned"].get("source_to_target"))
        rows.append(
            [
                name,
                f"{run['num_poison']} ({run['poison_rate']:.2%})",
                data["config"]["integration"],
                f"{len(data['runs'])} ({data['summary'].get('baseline', 'shared')})",
                _mean_cell("clean_accuracy", f["clean"].get("clean_accuracy")),
                _mean_cell("clean_accuracy", f["poisoned"].get("clean_accuracy")),
                _mean_cell("attack_success_rate", f["poisoned"].get("attack_success_rate")),
                s2t,
                _reference(BOOK_TEXT, name),
                _reference(NOTEBOOK, name),
                NOTES.get(name, ""),
            ]
        )
    header = [
        "experiment",
        "poison (share)",
        "integration",
        "seeds (baseline)",
        "clean model acc",
        "poisoned model acc",
        "ASR",
        "test airplanes -> bird (clean -> poisoned)",
        "book text",
        "notebook",
        "note",
    ]
    return markdown_table(header, rows)


def _interval_cells(key: str, pairs: list[tuple[float, int]]) -> list[str]:
    stat = mean_interval([v for v, _ in pairs])
    t_cell = "single run" if stat.single else f"{_fmt(key, stat.low)} - {_fmt(key, stat.high)}"
    successes, n = hits(key, pairs)
    w = rate_interval(successes, n)
    scale = n if key == "source_to_target" else 1.0  # a count: images of one model
    return [str(len(pairs)), t_cell, f"{_fmt(key, w.low * scale)} - {_fmt(key, w.high * scale)} (n = {n:,})"]


def interval_table(runs: Mapping[str, dict]) -> str:
    """Table 2: t interval over seeds and Wilson interval over the test images, per figure."""
    rows = []
    for name, data in runs.items():
        f = figures(data)
        for model in ("clean", "poisoned"):
            for key, pairs in f[model].items():
                if model == "clean" and key == "attack_success_rate":
                    continue  # the clean model's ASR is the floor, shown in each run's report
                rows.append([name, model, LABELS[key], *_interval_cells(key, pairs)])
    header = [
        "experiment",
        "model",
        "figure",
        "models",
        "95% interval over seeds (Student t)",
        "95% interval over the test images (Wilson, one model at the mean rate)",
    ]
    return markdown_table(header, rows)


def reference_table(runs: Mapping[str, dict]) -> str:
    """Table 4: is the book's (text / notebook) figure inside our interval?"""
    rows = []
    for name, data in runs.items():
        f = figures(data)["poisoned"]
        for source, table in (("book text", BOOK_TEXT), ("notebook", NOTEBOOK)):
            for key, ref in table.get(name, {}).items():
                pairs = f.get(key)
                if not pairs:
                    continue
                stat = mean_interval([v for v, _ in pairs])
                successes, n = hits(key, pairs)
                w = rate_interval(successes, n)
                scale = n if key == "source_to_target" else 1.0
                inside_w = w.low * scale <= ref <= w.high * scale
                inside_t = "single run" if stat.single else ("inside" if stat.contains(ref) else "outside")
                rows.append(
                    [
                        name,
                        LABELS[key],
                        source,
                        f"{ref:g}",
                        _fmt(key, stat.mean),
                        inside_t,
                        "inside" if inside_w else "outside",
                    ]  # fmt: skip
                )
    header = [
        "experiment",
        "figure",
        "reference",
        "their figure",
        "ours (mean)",
        "theirs vs our t interval",
        "theirs vs our Wilson interval",
    ]
    return markdown_table(header, rows)


def _photo(e: Mapping | None) -> str:
    return "-" if e is None else f"{e['prediction']} {e['probability']:.2f}"


def external_table(runs: Mapping[str, dict]) -> str:
    """Table 5: the external airplane photos, counted over every seed's poisoned model (photos x
    models): how many are called bird without and, for a backdoor, with the trigger, and how
    many the trigger flips; the first seed's predictions are shown. For the Rutan rows this is
    the chapter's stealth-bomber test."""
    rows = []
    for name, data in runs.items():
        counts = external_counts(data)
        if counts is None:
            continue
        total, clean_birds, trig_birds, flipped, triggered = counts
        preds = data["runs"][0]["metrics"].get("external") or []
        clean = {e["image"]: e for e in preds if e["variant"] == "clean"}
        trig = {e["image"]: e for e in preds if e["variant"] == "triggered"}
        shown = "; ".join(
            f"{i}: {_photo(clean[i])}" + (f" -> {_photo(trig.get(i))}" if trig else "") for i in clean
        )
        rows.append(
            [
                name,
                str(len(data["runs"])),
                f"{clean_birds}/{total}",
                f"{trig_birds}/{total}" if triggered else "-",
                f"{flipped}/{total}" if triggered else "-",
                shown,
            ]
        )
    header = [
        "experiment",
        "models",
        "bird without trigger",
        "bird with trigger",
        "flipped by the trigger",
        "photos (first seed's model)",
    ]
    return markdown_table(header, rows)


def _shared_replicates(runs: Mapping[str, dict]) -> str:
    """The rows whose seeds share one clean model (their spread understates the real one)."""
    names = [
        n
        for n, d in runs.items()
        if len(d["runs"]) > 1 and d["summary"].get("baseline", "shared") == "shared"
    ]
    return ", ".join(f"`{n}`" for n in names) or "none"


def chapter_markdown(
    runs: Mapping[str, dict], *, command: str = COMMAND, recalibration: Mapping[str, Any] | None = None
) -> str:
    """The whole ``chapter.md``: how it was made, the five tables and how to read them.

    ``recalibration`` is the record of ``benchmarks/bn_recalibration.py``
    (:func:`~poisonlab.reporting.chapter_revision.load_recalibration`): with it the page says which
    rows' clean models carry the BatchNorm statistics of training revision 1.
    """
    parts = [
        "# The chapter's experiments on CIFAR-10",
        "",
        f"Generated by `{command}` from the `results.json` files that",
        "`bash benchmarks/run_chapter.sh` writes (see README.md here for the settings that differ",
        "from the book and the reviewer's checklist). Do not edit the tables by hand:",
        "`tests/reporting/test_results_docs.py` regenerates them from the JSON under `chapter/`.",
        "ASR = share of triggered test airplanes predicted as bird; mean ± sample std over seeds",
        "(a single run shows its value alone: its spread is unknown, not 0). Baseline *shared*: every",
        "seed is compared with one clean model; *per_seed*: each seed has its own. A Rutan row with",
        "27 poisons used every file of the companion folder (the WebP copy of rb-14 included); the",
        "notebook's set, now the configs' default, has 26.",
        "",
        figures_table(runs),
        "",
        *revision_section(runs, recalibration),
        "## Intervals",
        "",
        "The t interval is the spread between replicates (seeds); the Wilson interval covers only",
        "the sampling of the 10,000 test images (1,000 airplanes) for fixed models. Rows whose seeds",
        f"share one clean model ({_shared_replicates(runs)}) fine-tune the same poisoned images from",
        "it: their seeds differ in little more than numerical noise and shuffling, so their t",
        "interval understates the real variance; the *per_seed* rows train a clean model from",
        "scratch per seed and show it.",
        "",
        interval_table(runs),
        "",
        "## Differences",
        "",
        "Poisoned model minus the clean model, and minus its control: the fine-tune rows against",
        f"`{CONTROL}` (the same fine-tune on the clean set, no poison), the rows that fine-tune on",
        f"the scraped photos only against `{PLACEBO}` (the Rutan photos with their true label, the",
        "same fine-tune); a retrain's control is its clean model (same recipe and seed, no poison).",
        "*paired t*: both sides have the same seeds, seed k against seed k (its own clean model),",
        "the t interval of the per-seed differences; *welch*: two or more models per side, unpaired;",
        "*newcombe*: a single run on a side, the test-image counts of one model at the mean rate",
        "(test-set sampling only, and the two models' predictions taken as independent though they",
        "are on the same images): a difference outside it can still be one run's luck.",
        clean_model_sets(runs),
        "",
        difference_table(runs),
        "",
        "## The book's figures against ours",
        "",
        "*Inside*: the book's figure lies within our 95% interval (no difference shown); the t",
        "column needs two seeds or more. The notebook's figures are its own printed output (as read",
        "in issue 14); the text's figures are the chapter's prose.",
        "",
        reference_table(runs),
        "",
        "## External photos",
        "",
        "The chapter's three airplane photos (stealth bomber, F-117, F-16) predicted by every seed's",
        "poisoned model on the clean photo and, for a backdoor, with the trigger pasted on; the",
        "counts are over photos x models, the last column shows the first seed's model",
        "(`clean -> triggered`). The Rutan rows are the chapter's test of whether the stealth bomber",
        "becomes a bird after the Rutan Boomerang poisoning. Three photos: a count, not a rate, and",
        "the models of one row are not independent draws of the photos.",
        "",
        external_table(runs),
        "",
        *findings_section(runs),
        *checks_sections(runs),
    ]
    return "\n".join(parts)
