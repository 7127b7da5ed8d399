"""The report's sections as one self-contained HTML page (the charts beside it as PNG files)."""

from __future__ import annotations

import html
import re

from telemetry.weekly.sections import Section

_INLINE_CODE = re.compile(r"`([^`]+)`")

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1040px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; } td, th { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f4f4f4; text-align: left; } img { max-width: 100%; border: 1px solid #eee; }
code { background: #f4f4f4; padding: 1px 3px; font-size: 0.9em; }
"""


def _html_text(text: str) -> str:
    return _INLINE_CODE.sub(r"<code>\1</code>", html.escape(text, quote=False))


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{_html_text(subtitle)}</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += [f"<p>{_html_text(paragraph)}</p>" for paragraph in section.paragraphs]
        if section.image:
            parts.append(f'<p><img src="{html.escape(section.image)}" alt="{html.escape(section.title)}"></p>')
        if section.table:
            headers, rows = section.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>")
            for row in rows:
                cells = [html.escape(row[0])] + [
                    f"<code>{html.escape(cell)}</code>" if section.code else html.escape(cell) for cell in row[1:]
                ]
                parts.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
