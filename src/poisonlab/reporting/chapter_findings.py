"""The "Findings" section of ``docs/results/chapter.md``: the interpreting sentences, filled in.

Each finding is a sentence template filled from the runs' ``results.json`` and present only when
the rows it needs are committed, so no number in it is typed by hand. Every comparison names its
interval and says whether 0 (or the book's figure) lies outside it; a side measured once says
"one run". The intervals are the tables' own: a figure's is Student t over seeds when there are
two or more, else Wilson over the test images of one model (:mod:`poisonlab.reporting.stats`); a
difference's is :func:`~poisonlab.reporting.chapter_differences.comparison` (paired t, Welch or
Newcombe, by what the two sides hold).
"""

from __future__ import annotations

from collections.abc import Mapping

from poisonlab.reporting.chapter_data import BOOK_TEXT, NOTEBOOK, NOTEBOOK_BATCH, figures, hits
from poisonlab.reporting.chapter_differences import CONTROL, PLACEBO, comparison, control_of
from poisonlab.reporting.chapter_photo_findings import BACKDOORS, stealth_test, trigger_photos
from poisonlab.reporting.prose import points
from poisonlab.reporting.stats import Difference, mean_interval, rate_interval

__all__ = ["findings_section"]

S2T = "source_to_target"
#: a figure's name in the sentences
_NAMES = {
    "clean_accuracy": "clean accuracy",
    "attack_success_rate": "ASR",
    S2T: "test airplanes predicted bird",
}
_METHODS = {
    "paired t": "paired t over seeds",
    "welch": "Welch over seeds",
    "newcombe": "Newcombe, test images only",
}


def _num(key: str, value: float) -> str:
    if key != S2T:
        return f"{value:.3f}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _delta(key: str, value: float) -> str:
    return f"{value:+.1f}" if key == S2T else points(value)


def _models(pairs: list) -> str:
    return "one run" if len(pairs) == 1 else f"mean of {len(pairs)} seeds"


def _side(data: Mapping, model: str, key: str) -> str:
    """``0.803 (one run)``: the figure of one side, its mean over models and how many."""
    pairs = figures(data)[model][key]
    return f"{_num(key, sum(v for v, _ in pairs) / len(pairs))} ({_models(pairs)})"


def _diff(key: str, d: Difference) -> str:
    """``-3.8 points (Newcombe over the test images, 95% interval -4.9 to -2.8: 0 is outside it)``."""
    scale = 1.0 if key == S2T else 100.0
    verdict = "0 is outside it" if d.excludes_zero else "0 is inside it, no difference shown"
    interval = f"{scale * d.low:+.1f} to {scale * d.high:+.1f}"
    return (
        f"{_delta(key, d.estimate)} ({_METHODS.get(d.method, d.method)}, 95% interval {interval}: {verdict})"
    )


def _versus(runs: Mapping[str, dict], name: str, key: str, other: str) -> str | None:
    """``clean accuracy 0.842 (one run) -> 0.803 (one run): -3.8 points (...)``, ``name`` minus
    ``other`` (its clean model or another row); None when a side lacks the figure."""
    d = comparison(runs, name, key, other)
    if d is None:
        return None
    before = (
        _side(runs[name], "clean", key) if other == "clean model" else _side(runs[other], "poisoned", key)
    )
    return f"{_NAMES[key]} {before} -> {_side(runs[name], 'poisoned', key)}: {_diff(key, d)}"


def _interval(key: str, pairs: list[tuple[float, int]]) -> tuple[str, float, float]:
    """(name, low, high) of our figure: t over seeds with two or more, else Wilson (one model)."""
    successes, n = hits(key, pairs)
    scale = n if key == S2T else 1.0
    if len(pairs) >= 2:
        stat = mean_interval([v for v, _ in pairs], bounds=(0.0, float(scale)))
        return f"mean of {len(pairs)} seeds; t interval", stat.low, stat.high
    w = rate_interval(successes, n)
    return "one run; Wilson interval over the test images", w.low * scale, w.high * scale


def _figure(key: str, pairs: list[tuple[float, int]], refs: list[tuple[str, float]]) -> str:
    """``0.776 (mean of 3 seeds; t interval 0.760 to 0.791): the chapter text's 0.68 is outside
    it (below)``: our figure, its interval and each reference against it."""
    name, low, high = _interval(key, pairs)
    mean = sum(v for v, _ in pairs) / len(pairs)
    text = f"{_num(key, mean)} ({name} {_num(key, low)} to {_num(key, high)})"
    verdicts = []
    for source, ref in refs:
        where = "inside it, no difference shown" if low <= ref <= high else "outside it"
        if not low <= ref <= high:
            where += " (below)" if ref < low else " (above)"
        verdicts.append(f"{source} {ref:g} is {where}")
    return text + (f": {', '.join(verdicts)}" if verdicts else "")


def _shared_note(data: Mapping) -> str:
    if len(data["runs"]) > 1 and data["summary"].get("baseline", "shared") == "shared":
        return " Its seeds share one clean model, so the t interval understates the real spread."
    return ""


def _poisons(data: Mapping) -> str:
    run = data["runs"][0]
    return f"{run['num_poison']} poisoned images, {run['poison_rate']:.2%} of the poisoned training set"


def _photos(data: Mapping) -> str:
    return f"{data['runs'][0]['num_poison']} photos"


def _both(runs: Mapping[str, dict], name: str, other: str, keys=("clean_accuracy", S2T)) -> str:
    """``name`` against ``other`` on each figure both have, joined."""
    return "; ".join(t for k in keys if (t := _versus(runs, name, k, other)))


def _backdoors(runs: Mapping[str, dict]) -> list[str]:
    """Finding 1: each backdoor's ASR, its interval and the chapter text's figure against it."""
    lines = []
    for name in (n for n in BACKDOORS if n in runs):
        pairs = figures(runs[name])["poisoned"].get("attack_success_rate")
        if not pairs:
            continue
        ref = BOOK_TEXT.get(name, {}).get("attack_success_rate")
        refs = [] if ref is None else [("the chapter text's", ref)]
        tail = "" if refs else "; the chapter text gives no figure"
        asr = _figure("attack_success_rate", pairs, refs)
        lines.append(f"  - `{name}` ({_poisons(runs[name])}): ASR {asr}{tail}.{_shared_note(runs[name])}")
    if not lines:
        return []
    return ["- **Backdoor ASR against the chapter text** (triggered test airplanes predicted bird):", *lines]


def _saturation(runs: Mapping[str, dict]) -> list[str]:
    """Finding 2: the cyan square added (clipped) minus the cyan square replacing the pixels."""
    a, b = "cyan-square-add", "cyan-square-replace"
    if not {a, b} <= runs.keys() or (d := comparison(runs, a, "attack_success_rate", b)) is None:
        return []
    if not d.excludes_zero:
        verdict = "the saturation problem is not measurable here"
    elif d.estimate < 0:
        verdict = "the added square implants less: the saturation problem is measurable"
    else:
        verdict = "the added square implants more, not what the saturation problem predicts"
    text = _versus(runs, a, "attack_success_rate", b)
    return [
        f"- **Saturation** (`{b}` -> `{a}`, the square replacing the pixels, then added): {text}; {verdict}."
    ]


def _finetune_cost(runs: Mapping[str, dict]) -> list[str]:
    """Finding 3: each fine-tune control against the clean model, each backdoor against the
    control that fine-tunes exactly as it does (:func:`control_of`: batch 128 or the notebook's 32)."""
    lines = []
    for control in (n for n in runs if n == CONTROL or n.startswith(f"{CONTROL}-")):
        if text := _both(runs, control, "clean model"):
            lines.append(
                f"- **What the fine-tune alone costs** (the clean model -> `{control}`, "
                f"{_recipe(runs[control])}, no poison): {text}."
            )
    pairs = [(n, c) for n in BACKDOORS if n in runs and (c := control_of(runs, n)) is not None]
    controls = list(dict.fromkeys(c for _, c in pairs))
    for key in ("clean_accuracy", S2T):
        cells, outside = [], []
        for name, control in pairs:
            if (d := comparison(runs, name, key, control)) is not None:
                against = f" against `{control}`" if len(controls) > 1 else ""
                cells.append(f"`{name}`{against} {_diff(key, d)}")
                outside += [f"`{name}`"] if d.excludes_zero else []
        if cells:
            which = " or ".join(f"`{c}`" for c in controls)
            lines.append(
                f"- **Each backdoor against {which}** (the control that fine-tunes as it does; "
                f"{_NAMES[key]}, attack minus control): {'; '.join(cells)}. "
                f"0 is outside the interval for: {', '.join(outside) or 'none'}."
            )
    return lines


def _recipe(data: Mapping) -> str:
    """``5 epochs at batch 128``: a fine-tune row's recipe as its config sets it."""
    settings = (data["config"].get("finetune") or {}).get("settings") or {}
    parts = [f"{settings['epochs']} epochs" if "epochs" in settings else None]
    parts.append(f"batch {settings['batch_size']}" if "batch_size" in settings else None)
    return " at ".join(p for p in parts if p) or "its preset's recipe"


def _batch_size(runs: Mapping[str, dict]) -> list[str]:
    """Finding: each row fine-tuned at the notebook's batch 32 (``NAME-b32``) against the same row
    at batch 128, seed for seed from the same clean models (paired when both have them)."""
    lines = []
    for name in sorted(n for n in runs if n.endswith(NOTEBOOK_BATCH)):
        base = name.removesuffix(NOTEBOOK_BATCH)
        keys = ("clean_accuracy", "attack_success_rate", S2T)
        if base in runs and (text := _both(runs, name, base, keys)):
            sides = f"`{base}`, {_recipe(runs[base])} -> `{name}`, {_recipe(runs[name])}"
            lines.append(f"- **The notebook's batch size** ({sides}): {text}.")
    return lines


def _rutan_finetune(runs: Mapping[str, dict]) -> list[str]:
    """Finding 4: the Rutan fine-tune against the text, the notebook, the placebo and the 27 set."""
    name, lines = "rutan-finetune", []
    if name in runs:
        data, f = runs[name], figures(runs[name])["poisoned"]
        parts = []
        for key in (k for k in ("clean_accuracy", S2T) if f.get(k)):
            sources = (("the chapter text's", BOOK_TEXT), ("the notebook's", NOTEBOOK))
            refs = [(src, t[name][key]) for src, t in sources if key in t.get(name, {})]
            parts.append(f"{_NAMES[key].capitalize()} {_figure(key, f[key], refs)}")
        head = f"- **The Rutan Boomerang fine-tune** (`{name}`, {_photos(data)} labelled bird): "
        lines.append(head + ". ".join(parts) + "." + _shared_note(data))
        if PLACEBO in runs and (text := _both(runs, name, PLACEBO)):
            what = "the same photos labelled airplane, the same fine-tune"
            lines.append(f"- **Against its placebo** (`{PLACEBO}`, {what} -> `{name}`): {text}.")
    for base in ("rutan-finetune", "rutan-retrain"):
        more = f"{base}-27"
        if {base, more} <= runs.keys() and (text := _both(runs, more, base)):
            sides = f"`{base}`, {_photos(runs[base])} -> `{more}`, {_photos(runs[more])}"
            lines.append(f"- **The WebP duplicate of rb-14** ({sides}): {text}.")
    return lines


def _embraer(runs: Mapping[str, dict]) -> list[str]:
    """Finding 5: the Embraer photos against the Rutan photos, the same fine-tune."""
    a, b = "embraer-finetune", "rutan-finetune"
    if not {a, b} <= runs.keys() or not (text := _both(runs, a, b, (S2T, "clean_accuracy"))):
        return []
    sides = f"`{b}`, {_photos(runs[b])} -> `{a}`, {_photos(runs[a])}"
    return [f"- **Embraer against Rutan photos** ({sides}, the same fine-tune on the photos only): {text}."]


def _dilution(runs: Mapping[str, dict], name: str) -> str:
    """Whether the retrain's airplanes -> bird against its clean model(s) tells the poison apart."""
    d = comparison(runs, name, S2T, "clean model")
    n = len(runs[name]["runs"])
    if d is None or d.method != "paired t":
        who = "one retrain against one clean model" if n == 1 else f"{n} retrains against one clean model"
        return (
            f"{who} cannot separate the poison from retrain-to-retrain variation (two clean retrains "
            'from scratch may differ this much): "retraining dilutes" is neither shown nor refuted'
        )
    if d.excludes_zero:
        return (
            f"over {n} seeds, each against its own clean retrain, the poison moves the count beyond "
            "retrain-to-retrain variation: retraining does not dilute it away"
        )
    return (
        f"over {n} seeds, each against its own clean retrain, the poisoned retrains are not told apart "
        'from their clean retrains: consistent with "retraining dilutes" (an effect inside the interval '
        "is not excluded)"
    )


def _retrain(runs: Mapping[str, dict]) -> list[str]:
    """Finding 6: the poisoned retrain against its clean model; is "retraining dilutes" shown?"""
    name = "rutan-retrain"
    if name not in runs or not (text := _both(runs, name, "clean model")):
        return []
    line = f"- **Retraining** (the clean model -> `{name}`, {_photos(runs[name])} labelled bird): "
    line += f"{text}; {_dilution(runs, name)}."
    ref, pairs = BOOK_TEXT.get(name, {}).get(S2T), figures(runs[name])["poisoned"].get(S2T)
    if ref is not None and pairs:
        count = _figure(S2T, pairs, [("the chapter text's", ref)])
        line += f" {_NAMES[S2T].capitalize()} {count}."
    return [line]


def findings_section(runs: Mapping[str, dict]) -> list[str]:
    """The "## Findings" section's Markdown lines; empty when no finding's rows are in ``runs``."""
    items = [
        *_backdoors(runs),
        *trigger_photos(runs),
        *_saturation(runs),
        *_finetune_cost(runs),
        *_batch_size(runs),
        *_rutan_finetune(runs),
        *_embraer(runs),
        *_retrain(runs),
        *stealth_test(runs),
    ]
    if not items:
        return []
    intro = [
        "## Findings",
        "",
        "Each sentence is filled in from the same JSON as the tables (`chapter_findings.py`) and",
        "appears only when its rows are committed. `a -> b`: the figure of `a`, then of `b`, and",
        "`b` minus `a` with its 95% interval (the Differences section's: paired t, Welch or",
        "Newcombe); a figure's interval is Student t over seeds when there are two or more, else",
        "Wilson over the test images of one model. *One run*: a side measured once.",
        "",
    ]
    return [*intro, *items, ""]
