"""What a newcomer looks for in the first hour, checked so it cannot go stale: the license, `.env.example` against the
settings code, the knowledge base's answers against the catalog and the alert rules, the archive notice, the channel
guide with its Teams app package, and the walk-through."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from telemetry import catalog
from telemetry.catalog import Instrument

ROOT = Path(__file__).resolve().parents[1]
# bot/answers/config.py: the language model's settings (validated at start-up with the rest).
SETTINGS_SOURCES = (
    ROOT / "bot" / "settings.py",
    ROOT / "telemetry" / "config.py",
    ROOT / "bot" / "answers" / "config.py",
)
ENV_EXAMPLE = ROOT / ".env.example"
KNOWLEDGE = ROOT / "bot" / "knowledge" / "knowledge.json"
RULES = ROOT / "infra" / "prometheus" / "rules"
AZURE_ALERTS = ROOT / "infra" / "azure" / "modules" / "alerts.bicep"
TEAMS = ROOT / "infra" / "teams"

# Every way the settings code reads a variable: env.get("X"), environ.get("X"), parse_*(env, "X", ...).
_READS = (
    re.compile(r"""\benv(?:iron)?\.get\(\s*["']([^"']+)["']"""),
    re.compile(r"""\bparse_\w+\(\s*env(?:iron)?\s*,\s*["']([^"']+)["']"""),
)
_EXAMPLE_LINE = re.compile(r"^#? ?([A-Za-z_][A-Za-z0-9_]*)=(\S*)$")  # a setting, not a comment mentioning one


def variables_read() -> set[str]:
    source = "\n".join(path.read_text(encoding="utf-8") for path in SETTINGS_SOURCES)
    return {name for pattern in _READS for name in pattern.findall(source)}


def example_variables() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = _EXAMPLE_LINE.match(line)
        if match:
            assert match.group(1) not in found, f".env.example lists {match.group(1)} twice"
            found[match.group(1)] = match.group(2)
    return found


# ---- LICENSE --------------------------------------------------------------------------------------------------------


def test_the_license_file_is_the_one_pyproject_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
    assert declared == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


# ---- .env.example -----------------------------------------------------------------------------------------------


def test_env_example_lists_exactly_the_settings_the_code_reads() -> None:
    read = variables_read()
    assert {"MicrosoftAppId", "PORT", "APPLICATIONINSIGHTS_CONNECTION_STRING", "BOT_WORKERS"} <= read, read
    listed = set(example_variables())
    assert not read - listed, f".env.example lacks {sorted(read - listed)}: add them with their default"
    assert not listed - read, f".env.example lists {sorted(listed - read)}, which nothing reads"


def test_env_example_changes_nothing_when_copied_and_every_default_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every line is commented out, so a copied .env starts the bot as before; uncommented, the defaults are valid."""
    from bot.settings import Settings

    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    assert all(not line or line.startswith("#") for line in lines), "a setting is not commented out"
    defaults = {name: value for name, value in example_variables().items() if value}
    assert Settings.from_env(defaults) == Settings.from_env({}), "a default in .env.example is not the code's default"


def test_the_readme_points_to_env_example() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`.env.example`" in readme
    for name in variables_read():
        assert f"`{name}`" in readme, f"the README's configuration table does not mention {name}"


# ---- the bot's own answers about itself ---------------------------------------------------------------------------


def knowledge_answers() -> dict[str, str]:
    return {entry["id"]: entry["answer"] for entry in json.loads(KNOWLEDGE.read_text(encoding="utf-8"))}


def prometheus_names() -> set[str]:
    names = set()
    for metric in catalog.METRICS:
        suffixes = ("_bucket", "_sum", "_count") if metric.instrument is Instrument.HISTOGRAM else ("",)
        names |= {metric.prometheus_name + suffix for suffix in suffixes}
        names |= {metric.prometheus_name}
    names |= set(re.findall(r"^\s*- record:\s*(\S+)\s*$", (RULES / "recording.yml").read_text(), re.MULTILINE))
    return names


def prometheus_alerts() -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)\s*$", (RULES / "alerts.yml").read_text(), re.MULTILINE)


def test_every_metric_name_the_bot_mentions_exists() -> None:
    known = prometheus_names()
    labels = {attribute.name.replace(".", "_") for attribute in catalog.ATTRIBUTES}
    mentioned: set[str] = set()
    for topic, answer in knowledge_answers().items():
        for name in re.findall(r"\b((?:bot|process|http|otel)_[a-z_]+)\b", answer):
            assert name in known | labels, f"answer {topic!r} names {name}, which the bot does not export"
            mentioned.add(name)
    assert {"bot_turns_total", "bot_turn_duration_seconds_bucket", "process_memory_usage_bytes"} <= mentioned


def test_the_alerts_answer_matches_the_rule_files() -> None:
    answer = knowledge_answers()["alerts"]
    alerts = prometheus_alerts()
    azure = re.findall(
        r"^resource \w+ 'Microsoft\.Insights/(?:metricAlerts|scheduledQueryRules)@",
        AZURE_ALERTS.read_text(),
        re.MULTILINE,
    )
    assert re.search(rf"\bPrometheus has {len(alerts)} alerts\b", answer), answer
    assert re.search(rf"\bOn Azure there are {len(azure)} alert rules\b", answer), answer
    for alert in alerts:
        assert alert in answer, f"the alerts answer does not name {alert}"
    text = (RULES / "alerts.yml").read_text()
    # The thresholds quoted are the rules' own.
    for rule_text, quoted in (
        ("chatbot:http_request_duration_seconds:p95_5m > 2", "above 2 s"),
        ("chatbot:turn_error_ratio:rate5m > 0.05", "5 %"),
        ("> 0.8", "80 %"),
    ):
        assert rule_text in text, rule_text
        assert quoted in answer, quoted


def test_answers_that_name_an_alert_name_one_that_exists() -> None:
    alerts = set(prometheus_alerts())
    for topic, answer in knowledge_answers().items():
        for name in re.findall(r"\bChatbot[A-Z]\w+", answer):
            assert name in alerts, f"answer {topic!r} names the alert {name}, which alerts.yml does not define"


# ---- notices and guides -------------------------------------------------------------------------------------------


def test_the_readme_says_the_sdk_is_archived_and_where_to_go() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "archived" in readme
    assert "2025-12-31" in readme
    assert "Microsoft 365 Agents SDK" in readme
    assert "https://learn.microsoft.com/microsoft-365/agents-sdk/" in readme


def test_the_readme_speaks_of_the_product_not_of_build_machines() -> None:
    readme = (ROOT / "README.md").read_text().lower()
    for phrase in (
        "installed here",
        "can be installed here",
        "our machines",
        "this machine cannot",
        "not available here",
    ):
        assert phrase not in readme, phrase


def test_the_guides_exist_and_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for guide, needles in {
        "docs/teams-and-dev-tunnels.md": ("devtunnel host", "--allow-anonymous", "SingleTenant", "Upload a custom app"),
        "docs/make-it-your-own.md": ("knowledge.json", "telemetry/catalog.py", "alerts.yml", ".env.example"),
    }.items():
        assert f"]({guide})" in readme, f"the README does not link {guide}"
        text = (ROOT / guide).read_text()
        for needle in needles:
            assert needle in text, f"{guide} does not mention {needle}"
        for link in re.findall(r"\]\(((?!https?://)[^)#]+)", text):
            assert ((ROOT / guide).parent / link).exists(), f"{guide} links {link}, which does not exist"


# ---- the Teams app package ----------------------------------------------------------------------------------------


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_package", TEAMS / "build_package.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_teams_package_holds_a_manifest_for_the_bot_and_both_icons(tmp_path: Path) -> None:
    builder = _builder()
    bot_id = "11111111-2222-3333-4444-555555555555"
    teams_id = "66666666-7777-8888-9999-000000000000"
    out = tmp_path / "package.zip"
    assert builder.main(["--bot-app-id", bot_id, "--teams-app-id", teams_id, "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"], "files at the root"
        manifest = json.loads(package.read("manifest.json"))
        color, outline = package.read("color.png"), package.read("outline.png")
    assert manifest["id"] == teams_id
    [bot] = manifest["bots"]
    assert bot["botId"] == bot_id
    assert manifest["manifestVersion"] in manifest["$schema"]
    assert "${" not in json.dumps(manifest), "a placeholder was left"
    assert len(manifest["name"]["short"]) <= 30
    assert len(manifest["description"]["short"]) <= 80
    assert len(manifest["description"]["full"]) <= 4000
    assert _png_size(color) == (192, 192)
    assert _png_size(outline) == (32, 32)
    commands = {command["title"] for command in bot["commandLists"][0]["commands"]}
    assert commands <= {"help", "feedback", "cancel", "survey", "rate"}, "a command the bot does not understand"


def test_the_teams_package_refuses_an_app_id_that_is_no_guid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builder = _builder()
    assert builder.main(["--bot-app-id", "my-bot", "--out", str(tmp_path / "p.zip")]) == 2
    assert "--bot-app-id must be a GUID" in capsys.readouterr().err
    assert not (tmp_path / "p.zip").exists()
