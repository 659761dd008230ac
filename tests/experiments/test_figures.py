"""The trigger figures (chapter figures 4.11-4.13): config, footprints, files, skips, ART parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from poisonlab.experiments.common.specs import shared_dir
from poisonlab.experiments.figures import (
    blank_canvas,
    load_figures,
    measure_change,
    parse_figures,
    run_figures,
    write_figures,
)

CHAPTER_CONFIG = Path(__file__).parents[2] / "experiments" / "chapter" / "trigger-figures.yaml"
INSERT = {"random": False, "x_shift": 7, "y_shift": 5, "size": [18, 18], "mode": "RGB", "blend": 0.6}
FIGURES = [
    {"name": "single", "trigger": "single_pixel", "params": {"distance": 5, "pixel_value": 1}},
    {"name": "pattern", "trigger": "pattern", "params": {"distance": 5, "pixel_value": 1}},
    {"name": "insert", "trigger": "image_insert", "params": INSERT},
]


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """Two small random RGB photos (40x30 and 20x20)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a.png", (30, 40, 3)), ("b.jpg", (20, 20, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / name)
    return folder


def _config(tmp_path: Path, **changes) -> dict:
    return {"name": "figs", "figures": FIGURES, "photos": [], "base_dir": str(tmp_path), **changes}


# ------------------------------------------------------------------------------------- config
def test_the_chapter_config_parses_with_the_chapters_parameters(monkeypatch, tmp_path):
    monkeypatch.setenv("POISONLAB_SHARED", str(tmp_path))
    cfg = load_figures(CHAPTER_CONFIG)
    assert (cfg.canvas.height, cfg.canvas.width, cfg.canvas.channels, cfg.canvas.fill) == (32, 32, 3, 0.0)
    by_trigger = {f.trigger: f.params for f in cfg.figures}
    assert by_trigger["single_pixel"] == {"distance": 5, "pixel_value": 1}
    assert by_trigger["pattern"] == {"distance": 5, "pixel_value": 1}
    assert all(f.params.items() >= INSERT.items() for f in cfg.figures if f.trigger == "image_insert")
    assert cfg.photo_paths() == [tmp_path / "datasets" / "ch4" / "class-examples"]


def test_photos_default_to_the_chapters_class_examples(tmp_path):
    cfg = parse_figures({"figures": FIGURES, "base_dir": str(tmp_path)})
    assert cfg.photo_paths() == [Path(shared_dir()) / "datasets" / "ch4" / "class-examples"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"figures": [{"name": "x", "trigger": "nope"}]}, "unknown trigger 'nope'"),
        ({"figures": [{"name": "x", "trigger": "pattern", "params": {"distnace": 2}}]}, "distnace"),
        ({"figures": [{"name": "x", "trigger": "pattern", "params": {"pixel_value": 2}}]}, "pixel_value"),
        ({"figures": [FIGURES[0], FIGURES[0]]}, "distinct"),
        ({"figures": [{"name": "a/b", "trigger": "pattern"}]}, "file name"),
        ({"figures": []}, "figures"),
        ({"canvas": {"channels": 2}}, "channels"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_configs_are_refused_in_one_line(tmp_path, change, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_figures(_config(tmp_path, **change), origin="figs.yaml")
    assert "\n" not in str(info.value) and "figs.yaml" in str(info.value)


def test_a_missing_config_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="figures config not found"):
        load_figures(tmp_path / "none.yaml")


# ----------------------------------------------------------------------------------- measures
def test_measure_change_counts_pixels_values_box_and_distances():
    a = np.zeros((6, 5, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0], b[4, 3, :] = 255, 51  # one value at (1, 2), three at (4, 3)
    c = measure_change(a, b)
    assert (c.changed_pixels, c.changed_values, c.l0) == (2, 4, 4)
    assert c.bbox == {"top": 1, "left": 2, "bottom": 4, "right": 3, "height": 4, "width": 2}
    assert c.l2 == pytest.approx(np.sqrt(1 + 3 * 0.2**2)) and c.linf == pytest.approx(1.0)
    assert c.mask.sum() == 2 and c.mask[1, 2] and c.mask[4, 3]
    same = measure_change(a, a.astype(np.float32))  # unit scale: uint8 against float
    assert (same.changed_pixels, same.bbox, same.l2, same.linf) == (0, None, 0.0, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        measure_change(a, a[:, :4])


# -------------------------------------------------------------------------------- footprints
def test_each_trigger_changes_exactly_its_footprint(tmp_path):
    result = run_figures(parse_figures(_config(tmp_path)))
    figs = {f.spec.name: f.change for f in result.figures}
    r = c = 32 - 5  # ART's anchor: distance 5 from the bottom-right
    assert (figs["single"].changed_pixels, figs["single"].changed_values) == (1, 3)
    assert set(zip(*np.nonzero(figs["single"].mask), strict=True)) == {(r, c)}
    pattern = {(r, c), (r - 1, c - 1), (r, c - 2), (r - 2, c)}
    assert set(zip(*np.nonzero(figs["pattern"].mask), strict=True)) == pattern
    assert figs["pattern"].changed_values == 4 * 3
    box = figs["insert"].bbox  # inside the 18x18 box at x_shift 7, y_shift 5; blend 0.6 on black
    assert box["top"] >= 5 and box["bottom"] <= 5 + 17 and box["left"] >= 7 and box["right"] <= 7 + 17
    assert 0 < figs["insert"].changed_pixels <= 18 * 18
    assert figs["insert"].linf <= 0.6 + 1e-12


def test_files_results_and_report_are_written(tmp_path, photo_dir):
    cfg = parse_figures(_config(tmp_path, photos=[str(photo_dir)], upscale=4))
    result = run_figures(cfg)
    page = write_figures(result, tmp_path / "out")
    out = page.parent
    exact = np.asarray(Image.open(out / "canvas" / "single.png"))
    assert exact.shape == (32, 32, 3) and exact[27, 27].tolist() == [255, 255, 255] and exact.sum() == 3 * 255
    view = np.asarray(Image.open(out / "canvas" / "single-x4.png"))
    assert view.shape == (128, 128, 3) and view[27 * 4 : 28 * 4, 27 * 4 : 28 * 4].min() == 255
    mask = np.asarray(Image.open(out / "canvas" / "pattern-mask-x4.png"))
    assert mask.shape == (128, 128) and (mask > 0).sum() == 4 * 16
    doc = json.loads((out / "results.json").read_text())
    assert [f["name"] for f in doc["figures"]] == ["single", "pattern", "insert"]
    assert doc["figures"][0]["changed_pixels"] == 1 and doc["figures"][0]["bbox"]["top"] == 27
    assert {"commit", "versions", "seeds", "parameters"} <= set(doc["provenance"])
    assert doc["provenance"]["parameters"]["trigger_params"]["insert"]["backdoor_path"].endswith("alert.png")
    assert len(doc["photos"]["items"]) == 2 and doc["skipped"] == []
    for item in doc["photos"]["items"]:
        for files in item["files"].values():
            assert (out / files["exact"]).is_file() and (out / files["view"]).is_file()
    text = page.read_text()
    assert "![single](canvas/single-x4.png)" in text and "## On photos" in text
    assert (out / "run.json").is_file()


def test_photos_get_the_same_triggers_in_uint8(tmp_path, photo_dir):
    result = run_figures(parse_figures(_config(tmp_path, photos=[str(photo_dir / "a.png")])))
    (photo,) = result.photos
    assert photo.original.shape == (32, 32, 3) and photo.original.dtype == np.uint8
    assert set(photo.triggered) == {"single", "pattern", "insert"}
    assert photo.changes["single"].changed_pixels <= 1
    assert photo.changes["insert"].bbox is None or photo.changes["insert"].bbox["top"] >= 5


def test_missing_photos_and_trigger_files_are_skipped_with_the_reason(tmp_path):
    missing_icon = {
        "name": "icon",
        "trigger": "image_insert",
        "params": {**INSERT, "backdoor_path": "no.png"},
    }
    cfg = parse_figures(_config(tmp_path, photos=["gone/"], figures=[*FIGURES, missing_icon]))
    result = run_figures(cfg)
    assert [f.spec.name for f in result.figures] == ["single", "pattern", "insert"]
    assert result.photos == []
    reasons = {s["what"]: (s["reason"], s["path"]) for s in result.skipped}
    assert reasons["photos"] == ("not found", str(tmp_path / "gone"))
    assert reasons["figure icon"] == ("trigger image not found", str(tmp_path / "no.png"))
    text = write_figures(result, tmp_path / "out").read_text()
    assert "## Skipped" in text and "photos: not found" in text


def test_a_trigger_that_does_not_fit_the_canvas_is_a_config_error(tmp_path):
    far = {"name": "far", "trigger": "image_insert", "params": {**INSERT, "x_shift": 20}}
    with pytest.raises(ValueError, match="figure 'far'.*does not fit"):
        run_figures(parse_figures(_config(tmp_path, figures=[far])))


def test_a_trigger_that_does_not_fit_the_photos_is_skipped_for_them(tmp_path, photo_dir):
    cfg = parse_figures(_config(tmp_path, photos=[str(photo_dir)], photo_size=16, figures=[FIGURES[2]]))
    result = run_figures(cfg)
    assert len(result.figures) == 1 and all(not p.triggered for p in result.photos)
    assert result.skipped[0]["what"] == "figure insert on the photos"


# ------------------------------------------------------------------------------------ ART parity
@pytest.fixture
def art_p():
    pytest.importorskip("art", reason="IBM ART 1.20.1 is the test-only reference (requirements-dev.txt)")
    from art.attacks.poisoning import perturbations

    return perturbations


@pytest.mark.needs_art
def test_pixel_and_pattern_figures_equal_art_on_the_blank_canvas(tmp_path, art_p):
    result = run_figures(parse_figures(_config(tmp_path, figures=FIGURES[:2])))
    canvas = blank_canvas(result.config)
    single, pattern = (f.image[None] for f in result.figures)
    np.testing.assert_array_equal(single, art_p.add_single_bd(canvas, distance=5, pixel_value=1))
    np.testing.assert_array_equal(pattern, art_p.add_pattern_bd(canvas, distance=5, pixel_value=1))


def _art_insert(art_p, canvas, path):
    art_args = {**INSERT, "size": tuple(INSERT["size"])}
    return art_p.insert_image(canvas, backdoor_path=str(path), channels_first=False, **art_args)


@pytest.mark.needs_art
def test_image_insert_figure_equals_art_with_our_icon(tmp_path, art_p):
    from poisonlab.triggers import default_trigger_path

    result = run_figures(parse_figures(_config(tmp_path, figures=[FIGURES[2]])))
    expected = _art_insert(art_p, blank_canvas(result.config), default_trigger_path("alert"))
    np.testing.assert_array_equal(result.figures[0].image[None], expected)


@pytest.mark.needs_art
def test_image_insert_figure_equals_art_with_the_chapters_alert_white(tmp_path, art_p):
    icon = Path(shared_dir()) / "datasets" / "ch4" / "triggers" / "alert-white.png"
    if not icon.is_file():
        pytest.skip(f"the chapter's alert-white.png is not here: {icon} (shared data absent)")
    figure = {"name": "white", "trigger": "image_insert", "params": {**INSERT, "backdoor_path": str(icon)}}
    result = run_figures(parse_figures(_config(tmp_path, figures=[figure])))
    expected = _art_insert(art_p, blank_canvas(result.config), icon)
    np.testing.assert_array_equal(result.figures[0].image[None], expected)


def test_the_chapter_config_file_is_valid_yaml_with_known_keys():
    data = yaml.safe_load(CHAPTER_CONFIG.read_text())
    assert data["name"] == "trigger-figures" and len(data["figures"]) == 4
