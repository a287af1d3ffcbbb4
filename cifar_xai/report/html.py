"""A static HTML report: one folder (index.html + images/) that opens from disk with no network.

Every string that comes from outside (file names, class names, flags, settings) goes through
`html.escape`; figures are PNG files written beside the page and referenced relatively.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.baseline td { color: #777; font-style: italic; }
figure { display: inline-block; margin: 0.3em; text-align: center; vertical-align: top; }
figcaption { font-size: 0.75em; max-width: 260px; }
img.pixel { image-rendering: pixelated; }
.note { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass
class Report:
    """Sections of HTML built up in order, plus the image files they reference."""

    title: str
    out_dir: Path
    sections: list[str] = field(default_factory=list)
    _count: int = 0

    def __post_init__(self):
        (self.out_dir / "images").mkdir(parents=True, exist_ok=True)

    def image(self, png: bytes, alt: str, caption: str | None = None, width: int | None = None,
              pixelated: bool = False) -> str:
        """Write `png` into images/ and return a <figure> referencing it."""
        self._count += 1
        name = f"images/figure_{self._count:03d}.png"
        (self.out_dir / name).write_bytes(png)
        size = f' width="{width}"' if width else ""
        css = ' class="pixel"' if pixelated else ""
        caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
        return f'<figure><img src="{name}" alt="{escape(alt)}"{size}{css}>{caption_html}</figure>'

    def section(self, heading: str, *parts: str, first: bool = False) -> None:
        """Add a section at the end (or, `first`, at the top: a summary written last)."""
        html_ = f"<section><h2>{escape(heading)}</h2>\n" + "\n".join(parts) + "\n</section>"
        self.sections.insert(0, html_) if first else self.sections.append(html_)

    def write(self) -> Path:
        page = (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(self.title)}</title><style>{STYLE}</style></head>\n<body>\n"
            f"<h1>{escape(self.title)}</h1>\n" + "\n".join(self.sections) + "\n</body></html>\n"
        )
        path = self.out_dir / "index.html"
        path.write_text(page, encoding="utf-8")
        return path


def table(header: Sequence[str], rows: Sequence[Sequence[object]], row_classes: Sequence[str] | None = None) -> str:
    """An HTML table; floats shown with 3 decimals, everything escaped."""
    def cell(value: object) -> str:
        return f"{value:.3f}" if isinstance(value, float) else escape(value)

    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for index, row in enumerate(rows):
        css = f' class="{escape(row_classes[index])}"' if row_classes and row_classes[index] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def paragraph(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def preformatted(data: object) -> str:
    return f"<pre>{escape(json.dumps(data, indent=2, default=str))}</pre>"
