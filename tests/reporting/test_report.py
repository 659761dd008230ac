"""Report: one list of blocks rendered to Markdown and HTML."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from poisonlab.reporting import Report, confusion_matrix_png, curves_png, image_grid_png


@pytest.fixture
def report() -> Report:
    r = Report("Results")
    r.heading("Overview").paragraph("Two models were compared.")
    r.table(["model", "accuracy", "note"], [["clean", 0.912345, None], ["poisoned", 0.5, "x"]])
    r.heading("Details", level=3).image("figs/conf.png", "confusion matrix").code("poisonlab train\n\n")
    return r


def test_builder_methods_chain_and_keep_order(report):
    assert [kind for kind, _ in report.blocks] == [
        "heading",
        "paragraph",
        "table",
        "heading",
        "image",
        "code",
    ]
    assert report.heading("x") is report


def test_markdown(report):
    md = report.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "# Results"
    assert "## Overview" in lines and "### Details" in lines
    assert "Two models were compared." in lines
    i = lines.index("| model | accuracy | note |")
    assert lines[i + 1] == "|---|---|---|"
    assert lines[i + 2] == "| clean | 0.9123 |  |"  # floats to 4 decimals, None empty
    assert lines[i + 3] == "| poisoned | 0.5000 | x |"
    assert "![confusion matrix](figs/conf.png)" in lines
    j = lines.index("```")
    assert lines[j : j + 3] == ["```", "poisonlab train", "```"]
    assert md.index("## Overview") < md.index("| model |") < md.index("### Details") < md.index("![")


def test_html(report):
    page = report.to_html()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</body></html>")
    assert "<title>Results</title>" in page and "<h1>Results</h1>" in page
    assert "<h2>Overview</h2>" in page and "<h3>Details</h3>" in page
    assert "<p>Two models were compared.</p>" in page
    assert "<tr><th>model</th><th>accuracy</th><th>note</th></tr>" in page
    assert "<tr><td>clean</td><td>0.9123</td><td></td></tr>" in page
    assert "<img src='figs/conf.png' alt='confusion matrix'>" in page
    assert "<figcaption>confusion matrix</figcaption>" in page
    assert "<pre>poisonlab train\n\n</pre>" in page
    assert page.count("<table>") == page.count("</table>") == 1


def test_html_escapes_special_characters():
    nasty = "<script>alert('x') & \"y\"</script>"
    r = (
        Report(nasty)
        .heading(nasty)
        .paragraph(nasty)
        .table([nasty], [[nasty]])
        .image("a'b.png", nasty)
        .code(nasty)
    )
    page = r.to_html()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;) &amp; &quot;y&quot;&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") == 9  # title, h1, h2, p, th, td, alt, figcaption, pre
    assert "src='a&#x27;b.png'" in page  # a quote cannot close the attribute
    # Markdown keeps the text as written
    assert nasty in r.to_markdown()


def test_write_creates_both_files(tmp_path, report):
    md, page = report.write(tmp_path / "out" / "nested")
    assert md == tmp_path / "out" / "nested" / "report.md" and page.name == "report.html"
    assert md.read_text(encoding="utf-8") == report.to_markdown()
    assert page.read_text(encoding="utf-8") == report.to_html()
    md2, page2 = report.write(tmp_path, stem="summary")
    assert (md2.name, page2.name) == ("summary.md", "summary.html")


def test_unicode_is_written_as_utf8(tmp_path):
    md, page = Report("Évaluation — 犬").paragraph("µ ≥ 0").write(tmp_path)
    assert "Évaluation — 犬" in md.read_text(encoding="utf-8")
    assert "µ ≥ 0" in page.read_text(encoding="utf-8")


def _is_png(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        return img.size


def test_figures_are_pngs(tmp_path):
    conf = confusion_matrix_png(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "f" / "conf.png")
    assert conf == tmp_path / "f" / "conf.png"
    assert min(_is_png(conf)) > 100
    rgb = np.random.default_rng(0).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8)
    grey = rgb[..., :1].copy()
    assert min(_is_png(image_grid_png(rgb, tmp_path / "grid.png", titles=[str(i) for i in range(12)]))) > 10
    assert min(_is_png(image_grid_png(grey, tmp_path / "grey.png"))) > 10
    assert min(_is_png(image_grid_png(rgb[:0], tmp_path / "empty.png"))) > 10
    assert min(_is_png(curves_png({"train": [0.5, 0.7], "val": [None, 0.6]}, tmp_path / "c.png"))) > 10
