"""The chapter page's "Findings" sentences on constructed run files."""

from __future__ import annotations

from poisonlab.reporting.chapter_doc import chapter_markdown
from poisonlab.reporting.chapter_findings import findings_section
from poisonlab.reporting.chapter_photo_findings import STEALTH


def _metrics(
    acc: float, s2t: float, asr: float | None = None, stealth: tuple[str, float] | None = None
) -> dict:
    m = {
        "clean_accuracy": acc,
        "source_to_target": s2t,
        "counts": {"clean_accuracy": 10_000, "source_to_target": 1_000, "attack_success_rate": 1_000},
        "external": [],
    }
    if asr is not None:
        m["attack_success_rate"] = asr
    if stealth is not None:
        m["external"] = [
            {"image": STEALTH, "variant": "clean", "prediction": stealth[0], "probability": stealth[1]}
        ]
    return m


def _run_file(
    integration: str,
    acc: list[float],
    *,
    asr: list[float] | None = None,
    clean: list[float] | None = None,
    tag: str = "",
    stealth: list[tuple[str, float]] | None = None,
) -> dict:
    """A results.json with one run per seed; ``clean`` per seed (baseline per_seed) or None (one
    shared clean model at 0.84, 20 airplanes -> bird)."""
    runs = []
    for seed, a in enumerate(acc):
        run = {
            "seed": seed,
            "num_poison": 26,
            "poison_rate": 0.0006,
            "metrics": _metrics(
                a, 40.0 + 2 * seed, asr[seed] if asr else None, stealth[seed] if stealth else None
            ),
        }
        if clean is not None:
            run["clean_metrics"] = _metrics(clean[seed], 20.0 + seed)
            run["clean_model"] = f"clean-seed-{seed}"  # the same clean models in every row
        runs.append(run)
    return {
        "config": {"integration": integration, "metrics": {"source": "airplane"}, "attack": {"tag": tag}},
        "summary": {"baseline": "shared" if clean is None else "per_seed"},
        "clean": _metrics(0.84, 20.0),
        "runs": runs,
    }


def _text(runs: dict) -> str:
    return "\n".join(findings_section(runs))


def test_findings_appear_only_when_their_rows_exist() -> None:
    assert findings_section({}) == []
    assert findings_section({"unrelated": _run_file("finetune", [0.8])}) == []
    only_control = _text({"control-finetune": _run_file("finetune", [0.80])})
    assert "What the fine-tune alone costs" in only_control
    for absent in ("Backdoor ASR", "Saturation", "Rutan", "Embraer", "Retraining", "stealth", "placebo"):
        assert absent not in only_control
    one_cyan = {"cyan-square-add": _run_file("finetune", [0.8], asr=[0.96])}
    assert "Saturation" not in _text(one_cyan)
    one_cyan["cyan-square-replace"] = _run_file("finetune", [0.8], asr=[0.999])
    assert "Saturation" in _text(one_cyan)


def test_a_shared_single_run_row_says_one_run_and_uses_the_test_image_intervals() -> None:
    runs = {
        "control-finetune": _run_file("finetune", [0.80]),
        "art-single-pixel": _run_file("finetune", [0.81], asr=[0.95]),
    }
    text = _text(runs)
    assert "0.840 (one run) -> 0.800 (one run): -4.0 points (Newcombe" in text
    assert "ASR 0.950 (one run; Wilson interval over the test images" in text
    # single pixel against the control: 0.81 - 0.80 on 10,000 images each is within the noise
    line = next(li for li in text.splitlines() if "; clean accuracy, attack minus control)" in li)
    assert "0 is inside it, no difference shown" in line and line.endswith("interval for: none.")


def test_the_book_figure_inside_or_outside_our_interval() -> None:
    # one run at 0.90 of 1,000 triggered airplanes: Wilson 0.880 to 0.917 holds the text's 0.89
    inside = _text({"art-single-pixel": _run_file("finetune", [0.8], asr=[0.90])})
    assert "the chapter text's 0.89 is inside it, no difference shown" in inside
    outside = _text({"art-single-pixel": _run_file("finetune", [0.8], asr=[0.95])})
    assert "the chapter text's 0.89 is outside it (below)" in outside
    # three seeds: the t interval over them, and the note that a shared clean model understates it
    seeds = _text({"art-pattern": _run_file("finetune", [0.8] * 3, asr=[0.92, 0.93, 0.94])})
    assert "mean of 3 seeds; t interval 0.905 to 0.955): the chapter text's 0.93 is inside it" in seeds
    assert "share one clean model" in seeds
    assert "the chapter text gives no figure" in _text(
        {"cyan-square-add": _run_file("finetune", [0.8], asr=[0.96])}
    )


def test_per_seed_rows_use_the_paired_interval_and_decide_the_retrain() -> None:
    clean = [0.84, 0.82, 0.86]
    paired = _text({"rutan-retrain": _run_file("retrain", [0.84, 0.82, 0.86], clean=clean)})
    # seed k's retrain sends 20 + k more airplanes to bird than its own clean retrain
    assert "+21.0 (paired t over seeds" in paired and "0 is outside it" in paired
    assert "retraining does not dilute it away" in paired and "cannot separate" not in paired
    single = _text({"rutan-retrain": _run_file("retrain", [0.84])})
    assert "(Newcombe, test images only" in single
    assert "one retrain against one clean model cannot separate the poison" in single


def test_the_rutan_fine_tune_against_the_book_the_placebo_and_the_27_photos() -> None:
    runs = {"rutan-finetune": _run_file("finetune_poison_only", [0.77, 0.78, 0.76])}
    alone = _text(runs)
    assert "the chapter text's 0.68 is outside it (below), the notebook's 0.84 is outside it (above)" in alone
    assert "placebo" not in alone and "WebP" not in alone
    runs["rutan-finetune-placebo"] = _run_file("finetune_poison_only", [0.83, 0.84, 0.82])
    runs["rutan-finetune-27"] = _run_file("finetune_poison_only", [0.76, 0.77, 0.75])
    both = _text(runs)
    placebo = next(li for li in both.splitlines() if "Against its placebo" in li)
    # both rows share one clean model: seed k of one has nothing in common with seed k of the other
    assert "-6.0 points (Welch over seeds" in placebo
    assert "The WebP duplicate of rb-14" in both


def test_the_stealth_test_says_only_the_poisoned_side_without_clean_predictions() -> None:
    data = _run_file(
        "finetune_poison_only",
        [0.77, 0.78],
        tag="rutan-boomerang",
        stealth=[("bird", 0.6), ("airplane", 0.3)],
    )
    line = next(li for li in _text({"rutan-finetune": data}).splitlines() if li.startswith("  - `rutan"))
    assert "2 poisoned models: 1 of 2 call it bird; airplane probability 0.30" in line
    assert "clean model" not in line
    data["clean"]["external"] = _metrics(0.84, 20.0, stealth=("airplane", 0.83))["external"]
    line = next(li for li in _text({"rutan-finetune": data}).splitlines() if li.startswith("  - `rutan"))
    assert "Its clean model (one run): 0 of 1 call it bird; airplane probability 0.83" in line


def test_the_section_sits_on_the_page_before_the_checks() -> None:
    runs = {"control-finetune": _run_file("finetune", [0.80])}
    page = chapter_markdown(runs)
    assert page.index("## External photos") < page.index("## Findings")


def _finetune_row(batch: int, acc: list[float], asr: list[float] | None, clean: list[float]) -> dict:
    data = _run_file("finetune", acc, asr=asr, clean=clean)
    data["config"]["finetune"] = {"preset": "chapter", "settings": {"epochs": 5, "batch_size": batch}}
    return data


def test_a_batch_32_row_is_paired_with_its_batch_128_row_and_its_own_control() -> None:
    """``NAME-b32`` (the notebook's batch) against ``NAME`` seed for seed, and each backdoor against
    the control that fine-tunes as it does, never a control of another batch size."""
    clean = [0.84, 0.82, 0.86, 0.83, 0.85]
    runs = {
        "art-single-pixel": _finetune_row(
            128, [c - 0.04 for c in clean], [0.95, 0.94, 0.96, 0.93, 0.95], clean
        ),
        "art-single-pixel-b32": _finetune_row(32, [c - 0.02 for c in clean], [0.97] * 5, clean),
        "control-finetune": _finetune_row(128, [c - 0.04 for c in clean], None, clean),
    }
    text = _text(runs)
    batch = next(line for line in text.splitlines() if "The notebook's batch size" in line)
    assert (
        "`art-single-pixel`, 5 epochs at batch 128 -> `art-single-pixel-b32`, 5 epochs at batch 32" in batch
    )
    assert "clean accuracy" in batch and "ASR" in batch and "paired t over seeds" in batch
    # no control fine-tunes at batch 32 yet: the b32 row is compared with none
    against = [line for line in text.splitlines() if "Each backdoor against" in line]
    assert against and all("art-single-pixel-b32" not in line for line in against)
    runs["control-finetune-b32"] = _finetune_row(32, [c - 0.02 for c in clean], None, clean)
    text = _text(runs)
    assert "(the clean model -> `control-finetune-b32`, 5 epochs at batch 32, no poison)" in text
    against = next(line for line in text.splitlines() if "Each backdoor against" in line)
    assert "`art-single-pixel-b32` against `control-finetune-b32` +0.0 points" in against
    assert "`art-single-pixel` against `control-finetune` +0.0 points" in against


def test_a_batch_32_row_carries_the_books_figures_of_its_base_row() -> None:
    from poisonlab.reporting.chapter_data import BOOK_TEXT

    for name in ("art-single-pixel", "art-pattern", "art-image-insert"):
        assert BOOK_TEXT[f"{name}-b32"] == BOOK_TEXT[name]
    assert "rutan-finetune-b32" not in BOOK_TEXT  # the Rutan fine-tune's batch is the book's already
