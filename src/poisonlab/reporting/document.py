"""A tiny report model rendered to both Markdown and standalone HTML.

Reports (evaluation, experiments, scans) are built once as a list of blocks and written in
both formats, so the two never disagree. Text may mark code with backticks, as Markdown does
(`` `poisonlab scan` ``); the HTML page renders those spans as ``<code>`` instead of showing the
backticks. A report with a :meth:`Report.toc` block gets a table of contents linking to every
section, and each section heading an anchor (and, in HTML, a link back to the contents).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d2330}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccd;padding:4px 10px;text-align:right}
th{background:#eef1f7}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}figure{margin:1em 0}
figcaption{color:#555;font-size:.9em}pre{background:#f5f6f8;padding:1em;overflow-x:auto}
code{background:#f0f1f4;padding:0 .25em;border-radius:3px;font-size:.95em}
nav.toc{background:#f7f8fb;border:1px solid #dde;padding:.5em 1.5em;margin:1em 0}
nav.toc ul{margin:.2em 0;padding-left:1.2em}a.back{font-size:.6em;text-decoration:none;margin-left:.5em}
"""
#: id of the table of contents (the target of the "back to contents" links)
TOC_ID = "contents"
_CODE_SPAN = re.compile(r"`([^`\n]+)`")


def _inline(text: str) -> str:
    """Escaped HTML of ``text`` with its Markdown code spans (`` `x` ``) as ``<code>x</code>``."""
    parts = _CODE_SPAN.split(text)  # odd positions are the spans' contents
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _plain(text: str) -> str:
    """``text`` without code-span backticks (for attributes, where no markup can go)."""
    return _CODE_SPAN.sub(r"\1", text)


def _slug(text: str, taken: set[str]) -> str:
    """A unique anchor id from a heading: lower case, words joined by '-' (GitHub's rule, roughly)."""
    base = "-".join(re.sub(r"[^\w\s-]", "", _plain(text).lower()).split()) or "section"
    slug, n = base, 1
    while slug in taken or slug == TOC_ID:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug)
    return slug


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


@dataclass
class Report:
    """Ordered blocks: headings, paragraphs, tables, images and preformatted text."""

    title: str
    blocks: list[tuple[str, tuple]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> Report:
        self.blocks.append(("heading", (text, level)))
        return self

    def paragraph(self, text: str) -> Report:
        self.blocks.append(("paragraph", (text,)))
        return self

    def table(self, header: list[str], rows: list[list[object]]) -> Report:
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))
        return self

    def image(self, path: str, caption: str = "") -> Report:
        """``path`` relative to the report's folder."""
        self.blocks.append(("image", (path, caption)))
        return self

    def code(self, text: str) -> Report:
        self.blocks.append(("code", (text,)))
        return self

    def toc(self, title: str = "Contents", max_level: int = 2) -> Report:
        """A table of contents here, linking to every heading of level 2 .. ``max_level``."""
        self.blocks.append(("toc", (title, max_level)))
        return self

    def _anchors(self) -> dict[int, str]:
        """Block index -> anchor id of each heading, when the report has a table of contents."""
        if not any(kind == "toc" for kind, _ in self.blocks):
            return {}
        taken: set[str] = set()
        return {i: _slug(args[0], taken) for i, (kind, args) in enumerate(self.blocks) if kind == "heading"}

    def _toc_entries(self, max_level: int, anchors: dict[int, str]) -> list[tuple[int, str, str]]:
        """(level, text, anchor) of the headings a table of contents lists."""
        return [
            (args[1], args[0], anchors[i])
            for i, (kind, args) in enumerate(self.blocks)
            if kind == "heading" and 2 <= args[1] <= max_level
        ]

    def to_markdown(self) -> str:
        anchors = self._anchors()
        out = [f"# {self.title}", ""]
        for i, (kind, args) in enumerate(self.blocks):
            if kind == "heading":
                anchor = [f'<a id="{anchors[i]}"></a>', ""] if i in anchors else []
                out += [*anchor, "#" * args[1] + " " + args[0], ""]
            elif kind == "paragraph":
                out += [args[0], ""]
            elif kind == "table":
                header, rows = args
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
                out.append("")
            elif kind == "image":
                out += [f"![{args[1]}]({args[0]})", ""]
            elif kind == "code":
                out += ["```", args[0].rstrip(), "```", ""]
            elif kind == "toc":
                entries = self._toc_entries(args[1], anchors)
                out += [f'<a id="{TOC_ID}"></a>', "", f"**{args[0]}**", ""]
                out += ["  " * (level - 2) + f"- [{_plain(text)}](#{a})" for level, text, a in entries]
                out.append("")
        return "\n".join(out)

    def to_html(self) -> str:
        esc = html.escape
        anchors = self._anchors()
        out = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(_plain(self.title))}</title>",
            f"<style>{_CSS}</style></head><body><h1>{_inline(self.title)}</h1>",
        ]
        for i, (kind, args) in enumerate(self.blocks):
            out.append(self._html_block(kind, args, anchors.get(i), anchors))
        out.append("</body></html>")
        return "\n".join(out)

    def _html_block(self, kind: str, args: tuple, anchor: str | None, anchors: dict[int, str]) -> str:
        esc = html.escape
        if kind == "heading":
            text, level = args
            if anchor is None:
                return f"<h{level}>{_inline(text)}</h{level}>"
            back = f"<a class='back' href='#{TOC_ID}' title='back to the contents'>&#8593; contents</a>"
            return f"<h{level} id='{anchor}'>{_inline(text)}{back}</h{level}>"
        if kind == "paragraph":
            return f"<p>{_inline(args[0])}</p>"
        if kind == "table":
            header, rows = args
            head = "<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header) + "</tr>"
            body = ["<tr>" + "".join(f"<td>{_inline(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows]
            return "\n".join([head, *body, "</table>"])
        if kind == "image":
            return (
                f"<figure><img src='{esc(args[0])}' alt='{esc(_plain(args[1]))}'>"
                f"<figcaption>{_inline(args[1])}</figcaption></figure>"
            )
        if kind == "code":
            return f"<pre>{esc(args[0])}</pre>"
        title, max_level = args  # "toc"
        items = "".join(
            f"<li style='margin-left:{(level - 2) * 1.2}em'><a href='#{a}'>{_inline(text)}</a></li>"
            for level, text, a in self._toc_entries(max_level, anchors)
        )
        return f"<nav class='toc' id='{TOC_ID}'><strong>{_inline(title)}</strong><ul>{items}</ul></nav>"

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``out_dir``; returns both paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, page = out / f"{stem}.md", out / f"{stem}.html"
        md.write_text(self.to_markdown(), encoding="utf-8")
        page.write_text(self.to_html(), encoding="utf-8")
        return md, page
