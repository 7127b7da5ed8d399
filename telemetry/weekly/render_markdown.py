"""The report's sections as Markdown."""

from __future__ import annotations

from telemetry.weekly.sections import Section


def _md_cell(text: str, code: bool) -> str:
    text = text.replace("|", "\\|")
    return f"`{text}`" if code else text


def render_markdown(title: str, subtitle: str, sections: list[Section]) -> str:
    lines = [f"# {title}", "", subtitle, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.image:
            lines += [f"![{section.title}]({section.image})", ""]
        if section.table:
            headers, rows = section.table
            lines.append("| " + " | ".join(headers) + " |")
            lines.append("|" + "---|" * len(headers))
            for row in rows:
                cells = [row[0], *(_md_cell(cell, section.code) for cell in row[1:])]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)
