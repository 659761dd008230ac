"""Report navigation (table of contents, anchors) and code spans rendered as code in HTML."""

from __future__ import annotations

import re

from poisonlab.reporting import Report


def _long_report() -> Report:
    r = Report("Scan")
    r.paragraph("intro").toc()
    r.heading("Summary").paragraph("s")
    r.heading("strip").paragraph("a").heading("details", level=3)
    r.heading("strip")  # the same title twice gets a second anchor
    r.heading("F1 / AUROC (`scores`)")
    return r


def test_html_toc_links_every_section_to_its_anchor():
    page = _long_report().to_html()
    nav = re.search(r"<nav class='toc' id='contents'>(.*?)</nav>", page).group(1)
    links = re.findall(r"<a href='#([^']+)'>(.*?)</a>", nav)
    assert [text for _, text in links] == ["Summary", "strip", "strip", "F1 / AUROC (<code>scores</code>)"]
    anchors = [a for a, _ in links]
    assert anchors == ["summary", "strip", "strip-2", "f1-auroc-scores"]
    for anchor in anchors:  # every link has exactly one target
        assert page.count(f" id='{anchor}'") == 1
    assert "<h3 id='details'>" in page and "#details" not in nav  # level 3 is not listed by default
    assert page.index("<nav class='toc'") < page.index("<h2 id='summary'>")
    assert page.count("href='#contents'") == 5  # every heading links back to the contents


def test_markdown_toc_links_to_explicit_anchors():
    md = _long_report().to_markdown()
    lines = md.splitlines()
    assert "- [Summary](#summary)" in lines and "- [strip](#strip-2)" in lines
    assert "- [F1 / AUROC (scores)](#f1-auroc-scores)" in lines
    i = lines.index('<a id="summary"></a>')
    assert lines[i + 2] == "## Summary"
    assert '<a id="contents"></a>' in lines


def test_toc_max_level_lists_subsections():
    r = Report("x").toc(max_level=3).heading("a").heading("b", level=3)
    assert "<li style='margin-left:1.2em'><a href='#b'>b</a></li>" in r.to_html()
    assert "  - [b](#b)" in r.to_markdown().splitlines()


def test_reports_without_toc_are_unchanged():
    r = Report("x").heading("Overview")
    assert "<h2>Overview</h2>" in r.to_html() and "id=" not in r.to_html()
    assert "<a id=" not in r.to_markdown()


def test_code_spans_render_as_code_in_html_and_stay_in_markdown():
    text = "Dataset `digits-test` (360 images); run `poisonlab scan <data>`."
    r = Report("Evaluation of `m`").paragraph(text).table(["`k`"], [["`v` & w"]]).image("c.png", "see `x`")
    page = r.to_html()
    assert "`" not in page  # no raw Markdown backticks on the page
    assert (
        "<p>Dataset <code>digits-test</code> (360 images); run <code>poisonlab scan &lt;data&gt;</code>.</p>"
        in page
    )
    assert "<h1>Evaluation of <code>m</code></h1>" in page and "<title>Evaluation of m</title>" in page
    assert "<th><code>k</code></th>" in page and "<td><code>v</code> &amp; w</td>" in page
    assert "alt='see x'" in page and "<figcaption>see <code>x</code></figcaption>" in page
    assert text in r.to_markdown()


def test_code_blocks_keep_their_backticks_verbatim():
    page = Report("x").code("echo `date`").to_html()
    assert "<pre>echo `date`</pre>" in page


def test_the_evaluate_page_shows_no_markdown_backticks(tmp_path, tiny_model, make_colour_dataset):
    from poisonlab.evaluation import evaluate, write_evaluation

    data = make_colour_dataset(per_class=4, name="colours-test")
    result = evaluate(tiny_model, data, source="red", target="green", device="cpu")
    paths = write_evaluation(result, data, tmp_path, title="Evaluation", model_info={"id": "m"})
    page = paths["report_html"].read_text(encoding="utf-8")
    assert "Dataset <code>colours-test</code> (12 images" in page
    assert "`" not in page
    assert "Dataset `colours-test`" in paths["report_md"].read_text(encoding="utf-8")
