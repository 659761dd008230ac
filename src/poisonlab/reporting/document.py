"""A tiny report model rendered to both Markdown and standalone HTML.

Reports (evaluation, experiments, scans) are built once as a list of blocks and written in
both formats, so the two never disagree.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d2330}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccd;padding:4px 10px;text-align:right}
th{background:#eef1f7}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}figure{margin:1em 0}
figcaption{color:#555;font-size:.9em}pre{background:#f5f6f8;padding:1em;overflow-x:auto}
"""


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

    def to_markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, args in self.blocks:
            if kind == "heading":
                out += ["#" * args[1] + " " + args[0], ""]
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
        return "\n".join(out)

    def to_html(self) -> str:
        esc = html.escape
        out = [
            f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(self.title)}</title>",
            f"<style>{_CSS}</style></head><body><h1>{esc(self.title)}</h1>",
        ]
        for kind, args in self.blocks:
            if kind == "heading":
                out.append(f"<h{args[1]}>{esc(args[0])}</h{args[1]}>")
            elif kind == "paragraph":
                out.append(f"<p>{esc(args[0])}</p>")
            elif kind == "table":
                header, rows = args
                out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in r) + "</tr>" for r in rows]
                out.append("</table>")
            elif kind == "image":
                out.append(
                    f"<figure><img src='{esc(args[0])}' alt='{esc(args[1])}'>"
                    f"<figcaption>{esc(args[1])}</figcaption></figure>"
                )
            elif kind == "code":
                out.append(f"<pre>{esc(args[0])}</pre>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.html`` into ``out_dir``; returns both paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, page = out / f"{stem}.md", out / f"{stem}.html"
        md.write_text(self.to_markdown(), encoding="utf-8")
        page.write_text(self.to_html(), encoding="utf-8")
        return md, page
