"""``poisonlab images prepare`` through Typer's test runner."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from poisonlab.cli.images import images_app, parse_pad_color

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(images_app, name="images")
    return root


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    Image.new("RGB", (12, 6), (200, 10, 10)).save(src / "b.jpg")
    Image.new("RGBA", (6, 12), (10, 10, 200, 255)).save(src / "a.png")
    (src / "broken.jpg").write_bytes(b"garbage")
    return src


def test_prepare(app, photos, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(app, ["images", "prepare", str(photos), "--out", str(out), "--size", "8"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().count("\n") == 0
    assert "prepared 2 image(s) 8x8" in result.stdout and "skipped 1" in result.stdout
    assert "broken.jpg" in result.stderr
    assert (out / "filenames.txt").read_text().splitlines() == ["a.png", "b.jpg"]
    assert np.load(out / "images.npy").shape == (2, 8, 8, 3)
    assert (out / "a.png").is_file() and (out / "b.png").is_file()


def test_pad_colour_option(app, photos, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["images", "prepare", str(photos), "-o", str(out), "--size", "12", "--pad-color", "0,0,0"]
    )
    assert result.exit_code == 0, result.output
    x = np.load(out / "images.npy")
    assert (x[0][:, :3] == 0).all()  # a.png is 6 wide: black pad columns on the left


@pytest.mark.parametrize(
    "args",
    [
        ["--pad-color", "1,2"],
        ["--pad-color", "0,0,300"],
        ["--pad-color", "red-ish"],
        ["--size", "0"],
        ["--size", "100000"],  # tens of GB per image: refused before any photo is read
    ],
)
def test_bad_options_exit_2_with_one_line(app, photos, tmp_path, args):
    result = runner.invoke(app, ["images", "prepare", str(photos), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def test_missing_source_exits_2(app, tmp_path):
    result = runner.invoke(app, ["images", "prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr == f"error: source folder not found: {tmp_path / 'nope'}\n"
    assert "Traceback" not in result.output


def test_no_readable_images_exits_2(app, tmp_path):
    src = tmp_path / "empty"
    src.mkdir()
    result = runner.invoke(app, ["images", "prepare", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no readable images" in result.stderr


@pytest.mark.parametrize(("text", "rgb"), [("255,255,255", (255, 255, 255)), (" 1, 2 ,3", (1, 2, 3)),
                                           ("white", (255, 255, 255)), ("#000", (0, 0, 0))])  # fmt: skip
def test_parse_pad_color(text, rgb):
    assert parse_pad_color(text) == rgb
