"""Builds the Teams app package of the bot: manifest.json (from manifest.template.json) and its two icons, zipped.

    .venv/bin/python infra/teams/build_package.py --bot-app-id <Microsoft App ID of the Azure Bot> \
        [--teams-app-id <GUID, kept from the first build>] [--name otel-chatbot] [--out build/teams/otel-chatbot.zip]

Upload the zip in Teams (Apps -> Manage your apps -> Upload an app). Walk-through: docs/teams-and-dev-tunnels.md.
Standard library only; the icons are drawn here so that the package needs no image files in the repository.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import struct
import sys
import uuid
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).with_name("manifest.template.json")
COLOR_SIZE = 192  # Teams: the colour icon is 192 x 192
OUTLINE_SIZE = 32  # the outline icon is 32 x 32, white on transparent
ACCENT = (0x1F, 0x6F, 0xB2, 0xFF)
WHITE = (0xFF, 0xFF, 0xFF, 0xFF)
CLEAR = (0, 0, 0, 0)
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

Pixel = tuple[int, int, int, int]


def png(size: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An RGBA PNG of size x size drawn by pixel(x, y)."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(size)) for y in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8 bits per channel, RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def _bubble(size: int, inside: Pixel, outside: Pixel) -> Callable[[int, int], Pixel]:
    """A round speech bubble: a disc with a small tail at the bottom left."""
    centre, radius = size / 2, size * 0.38

    def pixel(x: int, y: int) -> Pixel:
        dx, dy = x + 0.5 - centre, y + 0.5 - centre * 0.9
        in_disc = dx * dx + dy * dy <= radius * radius
        tail_x, tail_y = x / size - 0.22, y / size - 0.7  # a triangle below the disc, pointing down-left
        in_tail = 0 <= tail_x <= 0.2 and 0 <= tail_y <= 0.2 - tail_x
        return inside if in_disc or in_tail else outside

    return pixel


def manifest(bot_app_id: str, teams_app_id: str, name: str, developer: str, url: str) -> dict[str, object]:
    for label, value in (("--bot-app-id", bot_app_id), ("--teams-app-id", teams_app_id)):
        if not _GUID.match(value):
            raise ValueError(f"{label} must be a GUID such as 00000000-0000-0000-0000-000000000000, not {value!r}")
    if not 1 <= len(name) <= 30:
        raise ValueError(f"--name must be 1 to 30 characters (Teams' limit for the short name), not {len(name)}")
    if not url.startswith("https://"):
        raise ValueError(f"--developer-url must be an https:// address, not {url!r}")
    values = {
        "TEAMS_APP_ID": teams_app_id,
        "BOT_APP_ID": bot_app_id,
        "BOT_NAME": name,
        "DEVELOPER_NAME": developer,
        "DEVELOPER_URL": url,
    }
    # ${NAME} placeholders inside JSON strings, filled JSON-escaped; "$schema" is not one.
    text = _PLACEHOLDER.sub(lambda m: json.dumps(values[m.group(1)])[1:-1], TEMPLATE.read_text(encoding="utf-8"))
    document: dict[str, object] = json.loads(text)
    return document


def build(out: Path, document: dict[str, object]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as package:  # files at the root of the zip, as Teams wants
        package.writestr("manifest.json", json.dumps(document, indent=2))
        package.writestr("color.png", png(COLOR_SIZE, _bubble(COLOR_SIZE, WHITE, ACCENT)))
        package.writestr("outline.png", png(OUTLINE_SIZE, _bubble(OUTLINE_SIZE, WHITE, CLEAR)))
    out.write_bytes(buffer.getvalue())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_package.py", description="Build the bot's Teams app package.")
    parser.add_argument("--bot-app-id", required=True, help="Microsoft App ID of the Azure Bot (BOT_APP_ID output)")
    parser.add_argument("--teams-app-id", help="the Teams app's own GUID; keep it across builds (default: a new one)")
    parser.add_argument("--name", default="otel-chatbot", help="short name shown in Teams (at most 30 characters)")
    parser.add_argument("--developer", default="otel-chatbot", help="developer name shown in the app details")
    parser.add_argument("--developer-url", default="https://github.com/", help="developer, privacy and terms URL")
    parser.add_argument("--out", type=Path, default=Path("build/teams/otel-chatbot.zip"), help="the zip to write")
    args = parser.parse_args(argv)
    teams_app_id = args.teams_app_id or str(uuid.uuid4())
    try:
        document = manifest(args.bot_app_id, teams_app_id, args.name, args.developer, args.developer_url)
    except ValueError as error:
        print(f"build_package.py: {error}", file=sys.stderr)
        return 2
    path = build(args.out, document)
    print(f"wrote {path} (Teams app id {teams_app_id}: pass it as --teams-app-id next time to update the same app)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
