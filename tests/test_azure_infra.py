"""The Azure template (azure.yaml, infra/azure, infra/docker) checked offline, as far as it can be without Azure.

No Bicep compiler can be installed here, so:
- every .bicep file is parsed with pycep-parser (.venv-bicep), and the parsed model is inspected below;
- checkov scans the Bicep and the Dockerfile (.venv-checkov) with no failed check, each skip justified inline;
- every KQL text (query pack, alert query, workbook queries) is parsed and analysed by the Kusto language service
  (infra/azure/kql-check, node) against tests/fixtures/kusto-schema.json, and a misspelt column is shown to be caught;
- names used by the template, workbook and queries are checked against telemetry/catalog.py and the settings code.
The tools come from `bash infra/dev/install-azure-checks.sh`; a missing tool fails the test (CI installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from telemetry import catalog

ROOT = Path(__file__).resolve().parents[1]
AZURE = ROOT / "infra" / "azure"
QUERIES = AZURE / "queries"
ALERT_QUERIES = AZURE / "alerts"
WORKBOOK = AZURE / "workbook" / "otel-chatbot.workbook.json"
KQL_CHECK = AZURE / "kql-check"
SCHEMA = ROOT / "tests" / "fixtures" / "kusto-schema.json"
DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
BICEP_PYTHON = ROOT / ".venv-bicep" / "bin" / "python"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_PYTHON = ROOT / ".venv-checkov" / "bin" / "python"
INSTALL_HINT = "run `bash infra/dev/install-azure-checks.sh` (infra/dev/install.sh --test does)"
TIMEOUT = 300

# Application Insights tables (classic names) for queries run on the resource; Log Analytics tables (App*) for the
# scheduled-query alert, which is scoped to the workspace.
APPLICATION_INSIGHTS = "ApplicationInsights"
LOG_ANALYTICS = "LogAnalytics"

SEED_QUERY = "requests | where success == false | summarize count() by resultCode"

# Checks skipped inline in the Bicep, each with its reason next to the resource. Adding one is a decision: add it here.
EXPECTED_CHECKOV_SKIPS = {
    "CKV_AZURE_17",
    "CKV_AZURE_212",
    "CKV_AZURE_222",
    "CKV_AZURE_225",
    "CKV_AZURE_134",
    # The state storage account (modules/storage.bicep): public endpoint with Entra ID only, no firewall that would
    # lock out the same-region web app, locally redundant by default, a name checkov cannot evaluate.
    "CKV_AZURE_35",
    "CKV_AZURE_43",
    "CKV_AZURE_59",
    "CKV_AZURE_206",
}

# App settings that are not the bot's own variables, and why the web app needs them.
PLATFORM_SETTINGS = {
    "WEBSITES_PORT": "the port App Service forwards HTTPS traffic to (the bot's PORT)",
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "App Service builds the Python package (root requirements.txt) on deployment",
    "AZURE_CLIENT_ID": "azure-identity's choice of the user-assigned identity (Entra ID ingestion, the state store)",
}
REQUIRED_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "OTEL_SERVICE_NAME",
    "MicrosoftAppType",
    "MicrosoftAppId",
    "MicrosoftAppTenantId",
}
SETTINGS_SOURCES = (
    ROOT / "bot" / "settings.py",
    ROOT / "telemetry" / "config.py",
    ROOT / "bot" / "answers" / "config.py",
)

# Built-in role definitions the template may assign: read-only monitoring for people, publishing for the bot.
MONITORING_READER = "43d0d8ad-25c7-4714-9337-8ba259a9fe05"
LOG_ANALYTICS_READER = "73c42c96-874c-492b-b04d-ab87d138a893"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
# With deployOpenAi the bot may call the chat deployment (docs/genai.md), on that account only.
COGNITIVE_SERVICES_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"
# The bot reads and writes conversation state in its storage account (BOT_STATE_STORE=blob), with no key.
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

# Dashboard panels the workbook mirrors (item names in the workbook JSON).
WORKBOOK_PANELS = {
    "requests-per-second",
    "error-ratio",
    "latency",
    "turns",
    "answers-vs-fallbacks",
    "conversations-and-users",
    "exceptions-by-type",
    "auth-failures",
    "availability",
}

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_ENV_READS = (
    re.compile(r"""\benv(?:iron)?\.get\(\s*["']([^"']+)["']"""),
    re.compile(r"""\bparse_\w+\(\s*env(?:iron)?\s*,\s*["']([^"']+)["']"""),
)


# ---- running the tools --------------------------------------------------------------------------------------------


def _require(path: Path | None, what: str) -> Path:
    if path is None or not path.exists():
        pytest.fail(f"{what} is missing ({path}): {INSTALL_HINT}", pytrace=False)
    return path


def _run(command: list[str], *, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=TIMEOUT, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command[:3])} … exited {result.returncode}:\n{result.stderr[-4000:]}", pytrace=False)
    return result.stdout


def _offline_environment() -> dict[str, str]:
    """checkov with every call home switched off, and any HTTP(S) it might still try sent to a closed local port."""
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    dead_end = "http://127.0.0.1:9"
    env.update(
        {
            "BC_SKIP_MAPPING": "TRUE",
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE",
            "CKV_PARSE_ERROR_FAIL": "true",
            "HTTP_PROXY": dead_end,
            "HTTPS_PROXY": dead_end,
            "http_proxy": dead_end,
            "https_proxy": dead_end,
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def _json_documents(text: str) -> Iterator[Any]:
    """checkov prints one JSON document per scanned directory."""
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        document, index = decoder.raw_decode(text, index)
        yield document


def bicep_files() -> list[Path]:
    return sorted(AZURE.rglob("*.bicep"))


@pytest.fixture(scope="module")
def bicep() -> dict[str, Any]:
    """pycep-parser's reading of every .bicep file: {"pycep_parser": version, "files": {relative path: result}}."""
    python = _require(BICEP_PYTHON, "the pycep-parser environment .venv-bicep")
    paths = [str(path.relative_to(ROOT)) for path in bicep_files()]
    return json.loads(_run([str(python), str(AZURE / "checks" / "parse_bicep.py"), *paths]))


def model(bicep: dict[str, Any], relative: str) -> dict[str, Any]:
    parsed = bicep["files"][relative]
    assert parsed["ok"], f"{relative} does not parse: {parsed['error']}"
    return parsed["model"]


@dataclass(frozen=True)
class CheckovRun:
    returncode: int
    reports: dict[str, dict[str, Any]]  # check_type -> report
    stderr: str


@pytest.fixture(scope="module")
def checkov() -> CheckovRun:
    executable = _require(CHECKOV, "checkov (.venv-checkov)")
    command = [
        str(executable),
        "--framework",
        "bicep",
        "dockerfile",
        "--skip-download",
        "--directory",
        str(AZURE.relative_to(ROOT)),
        "--directory",
        str(DOCKERFILE.parent.relative_to(ROOT)),
        "--output",
        "json",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=_offline_environment(), timeout=TIMEOUT, check=False
    )
    reports: dict[str, dict[str, Any]] = {}
    for document in _json_documents(result.stdout):
        for report in document if isinstance(document, list) else [document]:
            reports.setdefault(report["check_type"], report)  # the same report is repeated once per directory
    return CheckovRun(result.returncode, reports, result.stderr)


@dataclass(frozen=True)
class Kql:
    id: str
    database: str
    text: str


def kql_texts() -> list[Kql]:
    """Every KQL text the template deploys or documents: query pack files, alert queries, workbook queries."""
    texts = [Kql(str(path.relative_to(ROOT)), APPLICATION_INSIGHTS, path.read_text()) for path in kql_files(QUERIES)]
    texts += [Kql(str(path.relative_to(ROOT)), LOG_ANALYTICS, path.read_text()) for path in kql_files(ALERT_QUERIES)]
    for item in workbook_items():
        if item["type"] == 3 and item["content"].get("queryType") == 0:
            texts.append(Kql(f"workbook:{item['name']}", APPLICATION_INSIGHTS, item["content"]["query"]))
    return texts + runbook_kql()


def runbook_kql() -> list[Kql]:
    """The KQL blocks of the runbooks' "Confirm" sections: on the workspace (App* tables) or on Application Insights."""
    texts = []
    for path in sorted((ROOT / "docs" / "runbooks").glob("*.md")):
        for number, block in enumerate(re.findall(r"^```kql\n(.*?)^```", path.read_text(), re.S | re.M), 1):
            first_table = strip_comments(block).split()[0]
            database = LOG_ANALYTICS if re.fullmatch(r"App[A-Z]\w+", first_table) else APPLICATION_INSIGHTS
            texts.append(Kql(f"{path.relative_to(ROOT)}#kql{number}", database, block))
    return texts


def kql_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.kql"))


def workbook_items() -> list[dict[str, Any]]:
    return json.loads(WORKBOOK.read_text())["items"]


def workbook_query(name: str) -> str:
    return next(item["content"]["query"] for item in workbook_items() if item["name"] == name)


def _misspelt(text: str, right: str, wrong: str) -> str:
    assert right in text, f"{right!r} is not in the query any more: pick another column to misspell"
    return text.replace(right, wrong, 1)


# Queries with one column misspelt on purpose, run in the same batch: the checker must report each of them.
MISSPELT = {
    "misspelt:seed-query": (APPLICATION_INSIGHTS, "sucess", lambda: SEED_QUERY.replace("success", "sucess")),
    "misspelt:alert": (
        LOG_ANALYTICS,
        "ItemCnt",
        lambda: _misspelt((ALERT_QUERIES / "error-spike.kql").read_text(), "sum(ItemCount)", "sum(ItemCnt)"),
    ),
    "misspelt:model-alert": (
        LOG_ANALYTICS,
        "Summ",
        lambda: _misspelt((ALERT_QUERIES / "token-budget.kql").read_text(), "sum(Sum)", "sum(Summ)"),
    ),
    "misspelt:workbook": (
        APPLICATION_INSIGHTS,
        "itemCout",
        lambda: _misspelt(workbook_query("requests-per-second"), "itemCount", "itemCout"),
    ),
    "misspelt:wrong-table-flavour": (
        LOG_ANALYTICS,
        "success",
        lambda: "AppRequests | where success == false | summarize count() by ResultCode",
    ),
}


@pytest.fixture(scope="module")
def kql_diagnostics() -> dict[str, list[dict[str, Any]]]:
    """Diagnostics of every KQL text (and of the misspelt ones), from one run of the Kusto language service."""
    node = shutil.which("node")
    _require(Path(node) if node else None, "node")
    _require(KQL_CHECK / "node_modules" / "@kusto" / "language-service-next", "the Kusto language service")
    queries = [{"id": kql.id, "database": kql.database, "text": kql.text} for kql in kql_texts()]
    queries += [{"id": key, "database": database, "text": make()} for key, (database, _, make) in MISSPELT.items()]
    request = {"schema": str(SCHEMA), "queries": queries}
    output = json.loads(_run([str(node), str(KQL_CHECK / "check.mjs")], stdin=json.dumps(request)))
    assert output["engine"].startswith("@kusto/language-service-next ")
    return {result["id"]: result["diagnostics"] for result in output["results"]}


# ---- helpers over the parsed Bicep --------------------------------------------------------------------------------


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def loaded_files(parsed: dict[str, Any], bicep_file: str) -> set[Path]:
    """Files a Bicep model reads with loadTextContent(), resolved from the Bicep file's folder."""
    folder = (ROOT / bicep_file).parent
    found = set()
    for node in walk(parsed):
        if isinstance(node, dict) and isinstance(node.get("function"), dict):
            function = node["function"]
            if function.get("type") == "load_text_content":
                found.add((folder / function["parameters"]["file_path"]).resolve())
    return found


def resources(bicep: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in bicep["files"]:
        for name, resource in model(bicep, path).get("resources", {}).items():
            yield path, name, resource


def config(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's body; for a loop, the body of each element; for `if (...)`, the body deployed."""
    body = resource["config"]
    return body["config"] if "loop_type" in body or "condition" in body else body


def app_settings(bicep: dict[str, Any]) -> dict[str, Any]:
    app = model(bicep, "infra/azure/modules/app.bicep")
    site = config(app["resources"]["site"])
    assert site["properties"]["siteConfig"]["appSettings"]["function"]["type"] == "concat"
    settings: dict[str, Any] = {}
    for variable in site["properties"]["siteConfig"]["appSettings"]["function"]["parameters"].values():
        value = app["variables"][variable]["value"]
        if isinstance(value, dict):  # `empty(x) ? [] : [...]`
            value = value["operator"]["operands"]["false_value"]
        settings.update({entry["name"]: entry["value"] for entry in value})
    return settings


def variables_read_by_the_bot() -> set[str]:
    source = "\n".join(path.read_text(encoding="utf-8") for path in SETTINGS_SOURCES)
    return {name for pattern in _ENV_READS for name in pattern.findall(source)}


def strip_comments(kql: str) -> str:
    return "\n".join(line for line in kql.splitlines() if not line.lstrip().startswith("//"))


# ---- parsing, linting, analysing ----------------------------------------------------------------------------------


def test_every_bicep_file_parses_with_pycep_parser(bicep: dict[str, Any]) -> None:
    assert len(bicep["files"]) >= 8
    failures = {path: result["error"] for path, result in bicep["files"].items() if not result["ok"]}
    assert not failures, f"pycep-parser {bicep['pycep_parser']} cannot parse: {failures}"


def test_checkov_finds_no_failed_check_and_every_skip_is_justified(checkov: CheckovRun) -> None:
    assert set(checkov.reports) == {"bicep", "dockerfile"}, checkov.stderr[-4000:]
    failed = []
    for check_type, report in checkov.reports.items():
        summary = report["summary"]
        assert summary["parsing_errors"] == 0, report["results"].get("parsing_errors")
        assert summary["passed"] > 0, f"checkov ran no {check_type} check"
        failed += [
            f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
            for check in report["results"]["failed_checks"]
        ]
    assert not failed, "\n".join(failed)
    assert checkov.returncode == 0, checkov.stderr[-4000:]

    skipped = checkov.reports["bicep"]["results"]["skipped_checks"]
    reasons = {check["check_id"]: check["check_result"].get("suppress_comment", "").strip() for check in skipped}
    assert set(reasons) == EXPECTED_CHECKOV_SKIPS
    assert all(len(reason) >= 30 for reason in reasons.values()), reasons
    assert checkov.reports["dockerfile"]["results"]["skipped_checks"] == []


def test_every_kql_text_parses_and_analyses_without_errors_or_warnings(
    kql_diagnostics: dict[str, list[dict[str, Any]]],
) -> None:
    texts = kql_texts()
    assert len(texts) >= 16
    problems = {
        kql.id: [
            f"{d['severity']} {d['code']} line {d['line']} col {d['column']}: {d['message']}"
            for d in kql_diagnostics[kql.id]
            if d["severity"] in ("Error", "Warning")
        ]
        for kql in texts
    }
    assert not {key: value for key, value in problems.items() if value}


@pytest.mark.parametrize("key", sorted(MISSPELT))
def test_a_misspelt_column_is_caught(kql_diagnostics: dict[str, list[dict[str, Any]]], key: str) -> None:
    _, wrong, _ = MISSPELT[key]
    errors = [d for d in kql_diagnostics[key] if d["severity"] == "Error"]
    assert any(d["code"] == "KS142" and d["snippet"] == wrong for d in errors), errors


def test_the_schema_holds_the_tables_the_queries_need() -> None:
    databases = json.loads(SCHEMA.read_text())["databases"]
    ai_tables = {
        "requests",
        "dependencies",
        "traces",
        "exceptions",
        "customEvents",
        "customMetrics",
        "availabilityResults",
    }
    assert set(databases[APPLICATION_INSIGHTS]["tables"]) == ai_tables
    assert {"AppRequests", "AppExceptions", "AppDependencies"} <= set(databases[LOG_ANALYTICS]["tables"])
    requests = databases[APPLICATION_INSIGHTS]["tables"]["requests"]
    assert requests["success"] == "bool"
    assert requests["duration"] == "real"
    assert requests["customDimensions"] == "dynamic"


# ---- the KQL pack -------------------------------------------------------------------------------------------------


def test_the_query_pack_answers_the_issues_questions() -> None:
    names = {path.stem for path in kql_files(QUERIES)}
    assert names >= {
        "failed-requests-by-result-code",
        "latency-trend",
        "failures-by-operation",
        "exceptions-by-type",
        "bot-analytics",
        "slowest-turns",
        "failing-channel-replies",
        "pii-audit",
        "availability-by-location",
    }


@pytest.mark.parametrize("path", kql_files(QUERIES) + kql_files(ALERT_QUERIES), ids=lambda path: path.name)
def test_every_kql_file_starts_with_a_comment_saying_what_it_answers(path: Path) -> None:
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("//"):
            break
        header.append(line)
    assert lines[0].startswith("// "), f"{path.name} must start with a comment"
    assert "?" in " ".join(header), f"{path.name}: say which question the query answers"
    assert strip_comments(path.read_text()).strip(), f"{path.name} holds no query"


def test_the_seeds_query_is_in_the_pack_as_it_is() -> None:
    text = strip_comments((QUERIES / "failed-requests-by-result-code.kql").read_text())
    assert " ".join(text.split()) == SEED_QUERY


def test_the_query_pack_resource_deploys_every_kql_file(bicep: dict[str, Any]) -> None:
    pack = "infra/azure/modules/querypack.bicep"
    assert loaded_files(model(bicep, pack), pack) == {path.resolve() for path in kql_files(QUERIES)}


def test_alert_and_workbook_kql_come_from_the_checked_files(bicep: dict[str, Any]) -> None:
    """No KQL is written inline in Bicep: what is deployed is what the Kusto check saw."""
    alerts = "infra/azure/modules/alerts.bicep"
    rules = [
        config(resource)
        for _, _, resource in resources(bicep)
        if resource["type"] == "Microsoft.Insights/scheduledQueryRules"
    ]
    assert rules, "no scheduled-query alert"
    for rule in rules:
        assert rule["kind"] == "LogAlert"
        assert rule["properties"]["scopes"] == ["workspaceId"], "App* tables need the workspace as scope"
        for criterion in rule["properties"]["criteria"]["allOf"]:
            assert criterion["query"]["function"]["type"] == "load_text_content", "keep alert KQL in alerts/*.kql"
    assert loaded_files(model(bicep, alerts), alerts) == {path.resolve() for path in kql_files(ALERT_QUERIES)}
    workbook = "infra/azure/modules/workbook.bicep"
    assert loaded_files(model(bicep, workbook), workbook) == {WORKBOOK.resolve()}
    inline = re.compile(r"^\s*(query|body|serializedData)\s*:\s*'", re.MULTILINE)
    for path in bicep_files():
        found = inline.findall(path.read_text())
        assert not found, f"inline {found} in {path.name}: load it from a checked file"


# ---- names: the template speaks the bot's language ----------------------------------------------------------------


def test_kql_uses_only_names_the_bot_emits() -> None:
    # The GenAI section of the catalog (series that exist only with a model configured) counts too.
    metrics = {metric.name for metric in (*catalog.METRICS, *catalog.GENAI_METRICS)}
    events = {event.name for event in (*catalog.EVENTS, *catalog.GENAI_EVENTS)}
    properties = {prop for event in (*catalog.EVENTS, *catalog.GENAI_EVENTS) for prop in event.properties}
    attributes = {attribute.name: attribute.values for attribute in (*catalog.ATTRIBUTES, *catalog.GENAI_ATTRIBUTES)}
    dimension = r"(?:customDimensions|Properties)\[\s*\"([^\"]+)\"\s*\]"
    used_metrics: set[str] = set()
    used_events: set[str] = set()
    for kql in kql_texts():
        text = strip_comments(kql.text)
        keys = set(re.findall(dimension, text)) | set(re.findall(r"(?:customDimensions|Properties)\.(\w+)", text))
        assert keys <= set(attributes) | properties, f"{kql.id}: unknown dimensions {keys - set(attributes)}"
        for key, value in re.findall(dimension + r"\)?\s*==\s*\"([^\"]*)\"", text):
            if attributes.get(key):
                assert value in attributes[key], f"{kql.id}: {key} is never {value!r}"
        compared = set(re.findall(r"\b[Nn]ame\s*==\s*\"([^\"]+)\"", text))
        for group in re.findall(r"\b[Nn]ame\s+in\s*\(([^)]*)\)", text):
            compared |= set(re.findall(r"\"([^\"]+)\"", group))
        allowed: set[str] = set()
        if re.search(r"\b(customMetrics|AppMetrics)\b", text):
            allowed |= metrics
        if re.search(r"\b(customEvents|AppEvents)\b", text):
            allowed |= events
        if re.search(r"\b(requests|AppRequests)\b", text):
            allowed.add(catalog.SPAN_MESSAGES_REQUEST)
        if re.search(r"\b(dependencies|AppDependencies)\b", text):
            allowed.add(catalog.SPAN_REPLY)  # the runbooks' replies to the channel
        assert compared <= allowed, f"{kql.id}: {compared - allowed} is no metric, event or span name of the catalog"
        for literal in re.findall(r"\"((?:bot|http|process)\.[a-z_.]+)\"", text):
            assert literal in metrics | set(attributes), f"{kql.id}: {literal} is not in the catalog"
        used_metrics |= compared & metrics
        used_events |= compared & events
    # The check above is not vacuous: the workbook and the pack read these.
    assert {
        catalog.TURNS.name,
        catalog.KNOWLEDGE_ANSWERS.name,
        catalog.KNOWLEDGE_FALLBACKS.name,
        catalog.ERRORS.name,
    } <= used_metrics
    assert {catalog.EVENT_MESSAGE_RECEIVED.name, catalog.EVENT_MESSAGE_SEND.name} <= used_events


def test_app_settings_are_the_variables_the_bot_reads(bicep: dict[str, Any]) -> None:
    settings = app_settings(bicep)
    read = variables_read_by_the_bot()
    assert read >= REQUIRED_SETTINGS, "the settings code no longer reads a variable the template sets"
    assert REQUIRED_SETTINGS | {"BOT_TELEMETRY_HASH_KEY"} <= set(settings)
    unknown = set(settings) - read - set(PLATFORM_SETTINGS)
    assert not unknown, f"app settings the bot does not read: {unknown}"
    assert settings["MicrosoftAppType"] == "UserAssignedMSI"
    assert "MicrosoftAppPassword" not in settings
    assert settings["BOT_HOST"] == "0.0.0.0"
    assert settings["PORT"] == settings["WEBSITES_PORT"]
    assert settings["BOT_METRICS_PORT"] == "0"
    assert settings["BOT_TRUST_FORWARDED_HEADERS"] == "true"  # App Service's front ends terminate TLS


def test_azd_restore_and_the_app_service_build_install_the_project_with_its_pins() -> None:
    """azd's Python restore runs `pip install -r requirements.txt` in the service's folder (the repository root here),
    and App Service's build (Oryx) looks for requirements.txt at the root of the deployed source."""
    requirements = ROOT / "requirements.txt"
    assert requirements.is_file(), "azd restore and the App Service build need a root requirements.txt"
    lines = [line.strip() for line in requirements.read_text().splitlines() if line.strip() and line[0] != "#"]
    assert "." in lines, "the build must install the project itself"
    constraints = [line.split(maxsplit=1)[1] for line in lines if line.startswith("-c ")]
    assert constraints, "the build must use the pinned versions"
    assert all(
        (requirements.parent / path).resolve() == ROOT / "infra" / "dev" / "constraints.txt" for path in constraints
    )
    ignored = (ROOT / ".webappignore").read_text().splitlines()
    assert "*_env/" in ignored, "azd's restore virtualenv (<folder>_env) must stay out of the upload"
    assert not any(line.rstrip("/") in ("infra", "infra/dev") for line in ignored), "the build needs the pins"


# ---- the resources ------------------------------------------------------------------------------------------------


def test_every_resource_has_a_pinned_current_api_version(bicep: dict[str, Any]) -> None:
    types = set()
    for path, name, resource in resources(bicep):
        version = resource["api_version"]
        assert re.fullmatch(r"20\d\d-\d\d-\d\d(-preview)?", version), f"{path}:{name} {version}"
        assert version >= "2018-03-01", f"{path}:{name} uses the old API version {version}"
        types.add(resource["type"])
    assert types >= {
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.Insights/components",
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.Insights/diagnosticSettings",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        "Microsoft.BotService/botServices",
        "Microsoft.Insights/actionGroups",
        "Microsoft.Insights/metricAlerts",
        "Microsoft.Insights/scheduledQueryRules",
        "Microsoft.Authorization/roleAssignments",
        "Microsoft.Insights/workbooks",
        "Microsoft.OperationalInsights/queryPacks",
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/blobServices",
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "Microsoft.Storage/storageAccounts/managementPolicies",
        "Microsoft.Insights/autoscalesettings",
    }


def test_workspace_retention_cap_and_workspace_based_application_insights(bicep: dict[str, Any]) -> None:
    main = model(bicep, "infra/azure/main.bicep")
    assert main["parameters"]["logRetentionDays"]["default"] == 30
    assert main["parameters"]["dailyCapGb"]["default"] == 0
    assert main["parameters"]["disableLocalAuth"]["default"] is False
    monitoring = model(bicep, "infra/azure/modules/monitoring.bicep")["resources"]
    workspace = config(monitoring["workspace"])["properties"]
    assert workspace["retentionInDays"] == "retentionInDays"
    assert "workspaceCapping" in workspace
    insights = config(monitoring["appInsights"])["properties"]
    assert insights["IngestionMode"] == "LogAnalytics"
    assert insights["DisableLocalAuth"] == "disableLocalAuth"
    assert "WorkspaceResourceId" in insights


def test_the_web_app_runs_the_bot_safely(bicep: dict[str, Any]) -> None:
    app = model(bicep, "infra/azure/modules/app.bicep")["resources"]
    site = config(app["site"])
    properties = site["properties"]
    site_config = properties["siteConfig"]
    assert properties["httpsOnly"] is True
    assert site_config["linuxFxVersion"].startswith("PYTHON|")
    assert site_config["appCommandLine"] == "python -m bot"
    assert site_config["alwaysOn"] is True
    assert site_config["ftpsState"] == "Disabled"
    assert site_config["minTlsVersion"] == "1.2"
    assert site_config["healthCheckPath"] == "/healthz"
    assert '"/healthz"' in (ROOT / "bot" / "app.py").read_text(), "the health check path is not a route of the bot"
    assert site["identity"]["type"] == "UserAssigned"
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": "bot"}
    assert config(app["plan"])["properties"]["reserved"] is True, "a Linux plan"
    diagnostics = config(app["siteDiagnostics"])
    assert diagnostics["properties"]["workspaceId"] == "workspaceId"
    assert {log["category"] for log in diagnostics["properties"]["logs"]} >= {"AppServiceHTTPLogs"}


def test_the_bot_registration_uses_the_managed_identity(bicep: dict[str, Any]) -> None:
    bot = config(model(bicep, "infra/azure/modules/bot.bicep")["resources"]["bot"])
    assert bot["properties"]["msaAppType"] == "UserAssignedMSI"
    assert bot["properties"]["msaAppMSIResourceId"] == "identityId"
    assert bot["properties"]["msaAppId"] == "identityClientId"
    main = model(bicep, "infra/azure/main.bicep")
    assert main["modules"]["bot"]["config"]["params"]["messagingEndpoint"].endswith("/api/messages")
    everything = "\n".join(path.read_text() for path in bicep_files())
    assert "MicrosoftAppPassword" not in everything
    assert "listKeys" not in everything


def test_alerts_follow_the_seed_and_notify_the_action_group(bicep: dict[str, Any]) -> None:
    main = model(bicep, "infra/azure/main.bicep")["parameters"]
    assert main["responseTimeThresholdMs"]["default"] == 2000, "seed: response time > 2 s"
    assert main["cpuThresholdPercent"]["default"] == 80, "seed: CPU > 80 %"
    alerts = model(bicep, "infra/azure/modules/alerts.bicep")["resources"]
    criteria = {}
    for name, resource in alerts.items():
        body = config(resource)
        if resource["type"] == "Microsoft.Insights/metricAlerts":
            for criterion in body["properties"]["criteria"].get("allOf", []):
                criteria[criterion["metricName"]] = criterion
        if resource["type"] in ("Microsoft.Insights/metricAlerts", "Microsoft.Insights/scheduledQueryRules"):
            properties = body["properties"]
            assert isinstance(properties["severity"], int), name
            assert properties["autoMitigate"] is True, name
            assert "actionGroup" in json.dumps(properties["actions"]), name
    assert criteria["requests/duration"]["threshold"] == "responseTimeThresholdMs"
    assert criteria["requests/duration"]["timeAggregation"] == "Average"
    assert criteria["requests/failed"]["operator"] == "GreaterThan"
    assert criteria["CpuPercentage"]["threshold"] == "cpuThresholdPercent"
    assert criteria["CpuPercentage"]["metricNamespace"] == "Microsoft.Web/serverfarms"
    group = config(alerts["actionGroup"])["properties"]
    assert group["emailReceivers"] == "emailReceivers"
    assert group["webhookReceivers"] == "webhookReceivers"
    variables = model(bicep, "infra/azure/modules/alerts.bicep")["variables"]
    receivers = variables["emailReceivers"]["value"]["operator"]["operands"]
    empty_address = {"function": {"type": "empty", "parameters": {"item_to_test": "alertEmailAddress"}}}
    assert receivers["condition"] == empty_address
    assert receivers["true_value"] == [], "no address: no e-mail receiver (not a receiver with an empty address)"
    assert receivers["false_value"][0]["emailAddress"] == "alertEmailAddress"


def _accessor(value: Any) -> str:
    """`a.b` for a Bicep property access as pycep models it."""
    operands = value["operator"]["operands"]
    return f"{operands['operand_1']}.{operands['operand_2']}"


def _dotted(value: Any) -> str:
    """`a.b.c.d` for a chain of Bicep property accesses (pycep nests the rest of the chain in operand_2)."""
    if not isinstance(value, dict):
        return str(value)
    operands = value["operator"]["operands"]
    return f"{_dotted(operands['operand_1'])}.{_dotted(operands['operand_2'])}"


def test_a_standard_availability_test_checks_healthz_from_several_locations_and_alerts(
    bicep: dict[str, Any],
) -> None:
    alerts = model(bicep, "infra/azure/modules/alerts.bicep")
    resources = alerts["resources"]
    [(test_name, test)] = [(n, r) for n, r in resources.items() if r["type"] == "Microsoft.Insights/webtests"]
    body = config(test)
    properties = body["properties"]
    # A standard test (not the retired URL ping test) of the bot's own health route, over HTTPS.
    assert body["kind"] == "standard"
    assert properties["Kind"] == "standard"
    assert properties["Enabled"] is True
    assert properties["SyntheticMonitorId"] == body["name"]
    assert properties["Request"] == {
        "RequestUrl": "healthUrl",
        "HttpVerb": "GET",
        "ParseDependentRequests": False,
        "FollowRedirects": False,
    }
    main = model(bicep, "infra/azure/main.bicep")
    params = config(main["modules"]["alerts"])["params"]
    assert params["healthUrl"] == "https://${app.outputs.defaultHostName}/healthz"
    from bot.app import create_app
    from bot.settings import Settings

    routes = {resource.canonical for resource in create_app(Settings.from_env({})).router.resources()}
    assert "/healthz" in routes
    assert properties["ValidationRules"]["ExpectedHttpStatusCode"] == 200
    assert properties["ValidationRules"]["SSLCheck"] is True
    assert properties["RetryEnabled"] is True
    assert properties["Frequency"] in (300, 600, 900)
    assert properties["Timeout"] <= 60
    # Microsoft recommends at least five locations; the alert needs several to fail at once.
    assert properties["Locations"]["loop_type"]["detail"]["array_name"] == "availabilityLocations"
    locations = alerts["variables"]["availabilityLocations"]["value"]
    assert len(locations) >= 5
    assert len(set(locations)) == len(locations)
    assert all(re.fullmatch(r"[a-z]+-[a-z]{2}-[a-z0-9]{3}-(azr|edge)", location) for location in locations)
    # Shown on the Application Insights resource (the portal's availability blade reads the hidden-link tag).
    assert body["tags"]["function"]["parameters"]["arg_2"] == {"'hidden-link:${appInsightsId}'": "Resource"}

    [alert] = [
        config(r)
        for r in resources.values()
        if r["type"] == "Microsoft.Insights/metricAlerts" and "webTestId" in config(r)["properties"]["criteria"]
    ]
    criteria = alert["properties"]["criteria"]
    assert criteria["'odata.type'"] == "Microsoft.Azure.Monitor.WebtestLocationAvailabilityCriteria"
    assert _accessor(criteria["webTestId"]) == f"{test_name}.id"
    assert criteria["componentId"] == "appInsightsId"
    assert criteria["failedLocationCount"] == "availabilityFailedLocations"
    assert [_accessor(alert["properties"]["scopes"][0]), alert["properties"]["scopes"][1]] == [
        f"{test_name}.id",
        "appInsightsId",
    ]
    failed = main["parameters"]["availabilityFailedLocations"]
    assert 1 < failed["default"] < len(locations), "one location's network trouble is not an outage"
    assert alert["properties"]["autoMitigate"] is True
    assert _accessor(alert["properties"]["actions"][0]["actionGroupId"]) == "actionGroup.id"


def test_rbac_gives_operators_read_access_and_nothing_broader(bicep: dict[str, Any]) -> None:
    roles = set()
    for path in bicep_files():
        roles |= {guid.lower() for guid in _GUID.findall(path.read_text())}
    assert roles == {
        MONITORING_READER,
        LOG_ANALYTICS_READER,
        MONITORING_METRICS_PUBLISHER,
        COGNITIVE_SERVICES_OPENAI_USER,
        STORAGE_BLOB_DATA_CONTRIBUTOR,
    }
    access = model(bicep, "infra/azure/modules/access.bicep")
    operators = access["resources"]["operatorAssignments"]
    assert operators["config"]["loop_type"]["detail"]["array_name"] == "operatorRoles"
    assert access["variables"]["operatorRoles"]["value"]["operator"]["operands"]["false_value"] == [
        "monitoringReaderRoleId",
        "logAnalyticsReaderRoleId",
    ]
    body = config(operators)
    assert "scope" not in body, "the operators' roles apply to the resource group"
    assert body["properties"]["principalType"] == "Group"
    publisher = config(access["resources"]["botPublisher"])
    assert publisher["scope"] == "appInsights", "the bot may publish to its own Application Insights only"


def test_the_optional_azure_openai_account_has_no_keys_and_the_bot_only_its_user_role(bicep: dict[str, Any]) -> None:
    """deployOpenAi: an Azure OpenAI account and deployment the bot calls as its managed identity (docs/genai.md)."""
    openai = model(bicep, "infra/azure/modules/openai.bicep")
    account = config(openai["resources"]["account"])
    assert account["kind"] == "OpenAI"
    assert account["properties"]["disableLocalAuth"] is True, "no keys: Entra ID only"
    assert account["properties"]["customSubDomainName"] == "accountName", "Entra ID needs the custom subdomain"
    deployment = config(openai["resources"]["deployment"])
    assert deployment["properties"]["model"] == {"format": "OpenAI", "name": "modelName", "version": "modelVersion"}
    assert deployment["sku"]["capacity"] == "capacity"
    role = config(openai["resources"]["botOpenAiUser"])
    assert role["scope"] == "account", "the bot may call this account only"
    assert role["properties"]["principalId"] == "botPrincipalId"
    assert role["properties"]["principalType"] == "ServicePrincipal"
    assert COGNITIVE_SERVICES_OPENAI_USER in (AZURE / "modules" / "openai.bicep").read_text()
    main = model(bicep, "infra/azure/main.bicep")
    module = main["modules"]["openAi"]["config"]
    assert module["condition"] == "deployOpenAi"
    assert main["parameters"]["deployOpenAi"]["default"] is False, "off unless asked for"
    principal = json.dumps(module["config"]["params"]["botPrincipalId"])
    assert all(part in principal for part in ('"identity"', "principalId")), "the role goes to the bot's identity"
    settings = app_settings(bicep)
    assert settings["AZURE_OPENAI_ENDPOINT"] == "openAiEndpoint"
    assert settings["AZURE_OPENAI_DEPLOYMENT"] == "openAiDeployment"
    assert settings["AZURE_OPENAI_CLIENT_ID"] == "identityClientId"
    assert "AZURE_OPENAI_API_KEY" not in settings


# ---- the language model's alerts: the Prometheus ones, on Azure Monitor -------------------------------------------

PROMETHEUS_GENAI_RULES = ROOT / "infra" / "prometheus" / "rules" / "genai.yml"
RUNBOOKS = ROOT / "docs" / "runbooks"
# Prometheus severity label -> Azure Monitor severity, as the existing alerts pair them (2 is Azure's "warning").
AZURE_SEVERITY = {"critical": 1, "warning": 2}


@dataclass(frozen=True)
class ModelAlert:
    resource: str  # symbolic name in modules/alerts.bicep
    query: str  # file in infra/azure/alerts
    measure: str  # the KQL column compared with the threshold
    parameter: str  # main.bicep parameter holding the threshold
    metric: catalog.Metric  # what both the Prometheus rule and the KQL read
    percent: bool  # Prometheus compares a ratio, Azure a percentage


MODEL_ALERTS = {
    "ChatbotModelErrors": ModelAlert(
        "modelErrorsAlert",
        "model-errors.kql",
        "ErrorPercent",
        "modelErrorPercent",
        catalog.GENAI_OPERATION_DURATION,
        True,
    ),
    "ChatbotModelThrottled": ModelAlert(
        "modelThrottledAlert",
        "model-throttled.kql",
        "ThrottledPercent",
        "modelThrottledPercent",
        catalog.GENAI_OPERATION_DURATION,
        True,
    ),
    "ChatbotTokenBudget": ModelAlert(
        "tokenBudgetAlert", "token-budget.kql", "Tokens", "tokenBudgetPerHour", catalog.GENAI_TOKEN_USAGE, False
    ),
}


@dataclass(frozen=True)
class PrometheusRule:
    name: str
    expr: str
    duration: str  # `for`, "" when none
    severity: str
    runbook_url: str


def prometheus_rules(path: Path) -> dict[str, PrometheusRule]:
    """Recording rules and alerts of a rule file, by record or alert name (the file's own shape; no YAML library)."""
    rules: dict[str, PrometheusRule] = {}
    blocks = re.split(r"^\s*- (?=record:|alert:)", path.read_text(), flags=re.MULTILINE)[1:]
    for block in blocks:
        name = re.match(r"(?:record|alert):\s*(\S+)", block)
        expr = re.search(
            r"^\s*expr:\s*\|?\s*\n?(.*?)(?=^\s*(?:for|labels|annotations):|^\s*- name:|\Z)", block, re.S | re.M
        )
        assert name, f"{path.name}: a rule without a name: {block[:80]!r}"
        assert expr, f"{path.name}: cannot read the expression of {name.group(1)}"
        duration = re.search(r"^\s*for:\s*(\S+)", block, re.M)
        severity = re.search(r"^\s*severity:\s*(\S+)", block, re.M)
        runbook = re.search(r"^\s*runbook_url:\s*'(.*)'\s*$", block, re.M)
        rules[name.group(1)] = PrometheusRule(
            name.group(1),
            " ".join(expr.group(1).split()),
            duration.group(1) if duration else "",
            severity.group(1) if severity else "",
            runbook.group(1) if runbook else "",
        )
    return rules


def seconds(duration: str) -> int:
    """Seconds of a Prometheus or KQL duration (`5m`, `1h`) or an ISO 8601 one (`PT10M`, `PT1H`)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    iso = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", duration)
    if iso:
        hours, minutes, secs = (int(part or 0) for part in iso.groups())
        return hours * 3600 + minutes * 60 + secs
    plain = re.fullmatch(r"(\d+)([smhd])", duration)
    assert plain, f"not a duration: {duration!r}"
    return int(plain.group(1)) * units[plain.group(2)]


def reachable_expressions(rules: dict[str, PrometheusRule], expr: str) -> list[str]:
    """An expression and those of every recording rule it reads, transitively."""
    found, todo, seen = [], [expr], set()
    while todo:
        current = todo.pop()
        found.append(current)
        for name in re.findall(r"\bchatbot:[a-z0-9_:]+", current):
            if name in rules and name not in seen:
                seen.add(name)
                todo.append(rules[name].expr)
    return found


def model_alert_rules(bicep: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The scheduled-query rules deployed only with a model, by the Prometheus alert name they carry."""
    alerts = model(bicep, "infra/azure/modules/alerts.bicep")["resources"]
    found = {}
    for name, resource in alerts.items():
        if resource["type"] == "Microsoft.Insights/scheduledQueryRules" and "condition" in resource["config"]:
            assert resource["config"]["condition"] == "modelAlerts", f"{name}: deploy it with the model alerts"
            body = config(resource)
            found[body["properties"]["actions"]["customProperties"]["alertname"]] = {"resource": name, **body}
    return found


def test_every_prometheus_model_alert_has_an_azure_alert_with_its_name_threshold_window_and_runbook(
    bicep: dict[str, Any],
) -> None:
    rules = prometheus_rules(PROMETHEUS_GENAI_RULES)
    prometheus_alerts = {name for name, rule in rules.items() if rule.severity}
    azure = model_alert_rules(bicep)
    assert set(MODEL_ALERTS) == prometheus_alerts == set(azure), "one Azure alert per Prometheus model alert"
    main = model(bicep, "infra/azure/main.bicep")
    defaults = {name: parameter.get("default") for name, parameter in main["parameters"].items()}
    base = re.fullmatch(
        r"\{\{ or \$externalLabels\.runbook_base_url \"([^\"]+)\" \}\}/\w+\.md",
        next(rules[name].runbook_url for name in prometheus_alerts),
    )
    assert base, "the Prometheus model alerts link <runbook_base_url>/<alert>.md"
    assert defaults["runbookBaseUrl"] == base.group(1), "the same runbook base as the Prometheus rules"
    for name, expected in MODEL_ALERTS.items():
        prometheus = rules[name]
        body = azure[name]
        properties = body["properties"]
        assert body["resource"] == expected.resource
        assert properties["severity"] == AZURE_SEVERITY[prometheus.severity], name
        assert properties["autoMitigate"] is True
        assert properties["evaluationFrequency"] == "PT5M"
        assert _accessor(properties["actions"]["actionGroups"][0]) == "actionGroup.id"
        # The runbook the Prometheus alert links, in the notification and in the rule's description.
        assert (RUNBOOKS / f"{name}.md").is_file()
        assert properties["actions"]["customProperties"]["runbook_url"] == f"${{runbookBaseUrl}}/{name}.md"
        assert f"${{runbookBaseUrl}}/{name}.md" in properties["description"]
        [criterion] = properties["criteria"]["allOf"]
        assert criterion["query"]["function"]["parameters"]["file_path"] == f"../alerts/{expected.query}"
        assert criterion["metricMeasureColumn"] == expected.measure
        assert criterion["operator"] == "GreaterThan"
        assert criterion["threshold"] == expected.parameter
        assert criterion["failingPeriods"] == {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1}
        # The threshold: the number the Prometheus alert compares first (a ratio there, a percentage here).
        comparisons = re.findall(r"(chatbot:[a-z0-9_:]+)\s*>\s*([0-9.]+)", prometheus.expr)
        (signal, threshold), *guard = comparisons
        expected_threshold = float(threshold) * (100 if expected.percent else 1)
        assert defaults[expected.parameter] == pytest.approx(expected_threshold), f"{name}: threshold drifted"
        # The window: the Prometheus range, plus its `for` when a ratio must hold (a log alert has no `for`).
        ranges = {
            r for expr in reachable_expressions(rules, rules[signal].expr) for r in re.findall(r"\[(\w+)\]", expr)
        }
        [prometheus_range] = ranges
        window = seconds(properties["windowSize"])
        query = (ALERT_QUERIES / expected.query).read_text()
        if expected.percent:
            assert window == seconds(prometheus_range) + seconds(prometheus.duration), f"{name}: window drifted"
            # The KQL's own window (for the calls-per-second guard) is the rule's, and so is the guard.
            [let_window] = re.findall(r"^let window = (\w+);", query, re.M)
            assert seconds(let_window) == window
            [(guard_signal, guard_rate)] = guard
            assert guard_signal == "chatbot:genai_calls:rate5m"
            [minimum] = re.findall(r"^let minimumCallsPerSecond = ([0-9.]+);", query, re.M)
            assert float(minimum) == float(guard_rate), f"{name}: the minimum call rate drifted"
            assert [d["name"] for d in criterion["dimensions"]] == ["AppRoleInstance", "Model"], (
                "per instance and model"
            )
        else:
            assert window == seconds(prometheus_range), f"{name}: window drifted"
            assert "dimensions" not in criterion, "the budget is for every instance together"


def test_model_alert_kql_reads_what_the_prometheus_rule_reads(bicep: dict[str, Any]) -> None:
    """The same metric, only attributes it has, and the same error.type selection as the Prometheus expression."""
    rules = prometheus_rules(PROMETHEUS_GENAI_RULES)
    for name, expected in MODEL_ALERTS.items():
        text = strip_comments((ALERT_QUERIES / expected.query).read_text())
        assert re.findall(r"\bName\s*==\s*\"([^\"]+)\"", text) == [expected.metric.name], name
        keys = set(re.findall(r"Properties\[\s*\"([^\"]+)\"\s*\]", text))
        assert keys <= set(expected.metric.attributes), (
            f"{name}: {keys - set(expected.metric.attributes)} not on the metric"
        )
        expressions = reachable_expressions(rules, rules[name].expr)
        assert any(expected.metric.prometheus_name in expr for expr in expressions), name
        prometheus_matchers = {
            (operator, value)
            for expr in expressions
            for operator, value in re.findall(r"\berror_type\s*(!=|=)\s*\"([^\"]*)\"", expr)
        }
        kql_matchers = {
            (operator.replace("==", "="), value)
            for operator, value in re.findall(r"\bErrorType\s*(!=|==)\s*\"([^\"]*)\"", text)
        }
        assert kql_matchers == prometheus_matchers, f"{name}: error.type selection differs from the Prometheus rule"
        if kql_matchers:
            source = rf"ErrorType\s*=\s*tostring\(Properties\[\"{re.escape(catalog.ERROR_TYPE)}\"\]\)"
            assert re.search(source, text), f"{name}: ErrorType must be the metric's {catalog.ERROR_TYPE}"
        for _, value in kql_matchers:
            assert not value or value.isdigit() or value in catalog.GEN_AI_ERRORS, (
                f"{name}: error.type is never {value!r}"
            )


def test_model_alerts_are_deployed_exactly_when_a_model_is(bicep: dict[str, Any]) -> None:
    main = model(bicep, "infra/azure/main.bicep")
    params = config(main["modules"]["alerts"])["params"]
    assert params["modelAlerts"] == {
        "operator": {"type": "or", "operands": {"operand_1": "deployOpenAi", "operand_2": "deployModelAlerts"}}
    }, "the template's own model (the AZURE_OPENAI_* settings), or one the operator configured"
    assert main["parameters"]["deployModelAlerts"]["default"] is False
    assert main["modules"]["openAi"]["config"]["condition"] == "deployOpenAi"
    for parameter in ("modelErrorPercent", "modelThrottledPercent", "tokenBudgetPerHour", "runbookBaseUrl"):
        assert params[parameter] == parameter
    # Every other alert is deployed whatever the model.
    alerts = model(bicep, "infra/azure/modules/alerts.bicep")["resources"]
    unconditional = {name for name, resource in alerts.items() if "condition" not in resource["config"]}
    assert unconditional >= {"errorSpikeAlert", "authFailuresAlert", "responseTimeAlert", "actionGroup"}
    assert {name for name in alerts if name not in unconditional} == {m.resource for m in MODEL_ALERTS.values()}


# ---- scale-out: shared state, autoscale, per-instance telemetry storage -----------------------------------------


def test_the_state_storage_account_takes_only_entra_id_and_keeps_its_container_private(bicep: dict[str, Any]) -> None:
    storage = model(bicep, "infra/azure/modules/storage.bicep")
    account = config(storage["resources"]["account"])
    properties = account["properties"]
    assert properties["allowSharedKeyAccess"] is False, "no account keys (nor SAS signed with them)"
    assert properties["defaultToOAuthAuthentication"] is True
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["allowBlobPublicAccess"] is False, "no container may be made anonymous"
    assert properties["isLocalUserEnabled"] is False
    assert account["kind"] == "StorageV2"
    container = config(storage["resources"]["container"])
    assert container["parent"] == "blobService"
    assert container["properties"]["publicAccess"] == "None"
    # Overwritten on every turn: blob soft delete would keep a snapshot per write; the container itself is protected.
    blob_service = config(storage["resources"]["blobService"])["properties"]
    assert "deleteRetentionPolicy" not in blob_service
    assert blob_service["containerDeleteRetentionPolicy"]["enabled"] is True
    [rule] = config(storage["resources"]["lifecycle"])["properties"]["policy"]["rules"]
    assert rule["definition"]["filters"]["prefixMatch"] == ["${containerName}/"]
    assert rule["definition"]["actions"]["baseBlob"]["delete"] == {"daysAfterModificationGreaterThan": "retentionDays"}

    main = model(bicep, "infra/azure/main.bicep")
    params = config(main["modules"]["stateStorage"])["params"]
    assert params["containerName"] == "bot-state"
    # Storage account names: 3-24 lowercase letters and digits, globally unique. uniqueString() gives 13 of them.
    assert params["accountName"] == "st${resourceToken}"
    token = main["variables"]["resourceToken"]["value"]["function"]
    assert token["type"] == "to_lower"
    assert token["parameters"]["string_to_change"]["function"]["type"] == "unique_string"
    assert re.fullmatch(r"[a-z0-9]{3,24}", "st" + "x" * 13)
    assert main["parameters"]["stateStorageSkuName"]["default"] == "Standard_LRS"
    assert "BOT_STATE_STORAGE_ACCOUNT" in main["outputs"]


def test_the_bot_identity_is_storage_blob_data_contributor_on_the_state_account_only(bicep: dict[str, Any]) -> None:
    storage = model(bicep, "infra/azure/modules/storage.bicep")
    assert storage["variables"]["storageBlobDataContributorRoleId"]["value"] == STORAGE_BLOB_DATA_CONTRIBUTOR
    assignments = [
        config(resource)
        for resource in storage["resources"].values()
        if resource["type"] == "Microsoft.Authorization/roleAssignments"
    ]
    [assignment] = assignments
    assert assignment["scope"] == "account", "on the state account, not the resource group"
    role = assignment["properties"]["roleDefinitionId"]["function"]["parameters"]
    assert role["resource_name_1"] == "storageBlobDataContributorRoleId"
    assert assignment["properties"]["principalId"] == "botPrincipalId"
    assert assignment["properties"]["principalType"] == "ServicePrincipal"
    module = config(model(bicep, "infra/azure/main.bicep")["modules"]["stateStorage"])
    assert _dotted(module["params"]["botPrincipalId"]) == "identity.outputs.principalId", "to the bot's identity"


def test_the_web_app_keeps_state_in_the_blob_store_with_its_managed_identity(bicep: dict[str, Any]) -> None:
    from bot.settings import Settings

    settings = app_settings(bicep)
    read = variables_read_by_the_bot()
    state = {"BOT_STATE_STORE", "BOT_STATE_BLOB_ACCOUNT_URL", "BOT_STATE_BLOB_CONTAINER"}
    assert state <= set(settings)
    assert state <= read, f"bot/settings.py does not read {state - read}"
    assert settings["BOT_STATE_STORE"] == "blob"
    assert "AZURE_STORAGE_CONNECTION_STRING" not in settings, "the identity, not a key"
    assert settings["BOT_STATE_BLOB_ACCOUNT_URL"] == "stateBlobEndpoint"
    assert settings["BOT_STATE_BLOB_CONTAINER"] == "stateContainerName"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId", "DefaultAzureCredential picks the bot's identity by it"
    outputs = model(bicep, "infra/azure/modules/storage.bicep")["outputs"]
    assert _dotted(outputs["blobEndpoint"]["value"]) == "account.properties.primaryEndpoints.blob"
    assert _dotted(outputs["containerName"]["value"]) == "container.name"
    params = config(model(bicep, "infra/azure/main.bicep")["modules"]["app"])["params"]
    assert _dotted(params["stateBlobEndpoint"]) == "stateStorage.outputs.blobEndpoint"
    assert _dotted(params["stateContainerName"]) == "stateStorage.outputs.containerName"
    # What the web app will hold, through the bot's own start-up validation: primaryEndpoints.blob ends with "/".
    deployed = Settings.from_env(
        {
            "BOT_STATE_STORE": settings["BOT_STATE_STORE"],
            "BOT_STATE_BLOB_ACCOUNT_URL": "https://st0123456789abc.blob.core.windows.net/",
            "BOT_STATE_BLOB_CONTAINER": "bot-state",
        }
    )
    assert deployed.state_store == "blob"
    assert deployed.blob_account_url == "https://st0123456789abc.blob.core.windows.net"
    assert deployed.blob_container == "bot-state"


async def test_the_state_stores_credential_asks_app_service_for_the_identity_named_by_azure_client_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the web app's AZURE_CLIENT_ID, the credential the blob store builds asks App Service's managed identity
    endpoint for a storage token of the bot's user-assigned identity, not for a system-assigned one (which the site
    does not have). Stand-in: App Service's identity endpoint as documented at
    learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference: IDENTITY_ENDPOINT and
    IDENTITY_HEADER in the environment, GET ?resource=&api-version=2019-08-01&client_id=, the header
    X-IDENTITY-HEADER, a JSON answer with access_token, expires_on (epoch seconds), resource and token_type."""
    from aiohttp import web
    from azure.identity.aio import DefaultAzureCredential

    asked: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        asked.append({**request.query, "header": request.headers.get("X-IDENTITY-HEADER", "")})
        return web.json_response(
            {
                "access_token": "token-for-the-bot",
                "expires_on": "4102444800",
                "resource": request.query.get("resource", ""),
                "token_type": "Bearer",
                "client_id": request.query.get("client_id", ""),
            }
        )

    app = web.Application()
    app.router.add_get("/msi/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client_id = "11111111-2222-3333-4444-555555555555"
    for name in ("AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE", "MSI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "platform-secret")
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    try:
        # As bot/storage/blob.py builds it for BOT_STATE_BLOB_ACCOUNT_URL.
        credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
        async with credential:
            access = await credential.get_token("https://storage.azure.com/.default")
    finally:
        await runner.cleanup()
    assert access.token == "token-for-the-bot"
    assert len(asked) == 1
    assert asked[0]["client_id"] == client_id
    assert asked[0]["resource"] == "https://storage.azure.com"
    assert asked[0]["header"] == "platform-secret"
    source = (ROOT / "bot" / "storage" / "blob.py").read_text()
    assert "DefaultAzureCredential(exclude_interactive_browser_credential=True)" in source


def test_the_plan_autoscales_on_cpu_between_the_instance_parameters(bicep: dict[str, Any]) -> None:
    app = model(bicep, "infra/azure/modules/app.bicep")
    [(name, resource)] = [
        (name, resource)
        for name, resource in app["resources"].items()
        if resource["type"] == "Microsoft.Insights/autoscalesettings"
    ]
    # Basic plans have no autoscale (manual scale only, up to 3 instances): the setting is deployed for the others.
    assert resource["config"]["condition"] == "autoscaleSupported"
    supported = app["variables"]["autoscaleSupported"]["value"]["operator"]
    assert supported["type"] == "not"
    assert supported["operands"]["bool_value"]["function"]["parameters"] == {
        "string_to_search": "skuName",
        "string_to_find": "B",
    }
    body = resource["config"]["config"]["properties"]  # a conditional resource nests its body
    assert body["enabled"] is True
    assert _accessor(body["targetResourceUri"]) == "plan.id"
    [profile] = body["profiles"]
    capacity = {key: value["function"]["parameters"]["value_to_convert"] for key, value in profile["capacity"].items()}
    assert capacity == {"minimum": "minInstances", "maximum": "maxInstances", "default": "minInstances"}
    rules = {rule["scaleAction"]["direction"]: rule for rule in profile["rules"]}
    assert set(rules) == {"Increase", "Decrease"}
    assert len(profile["rules"]) == 2
    out, quiet = rules["Increase"], rules["Decrease"]
    for rule in (out, quiet):
        trigger = rule["metricTrigger"]
        assert trigger["metricName"] == "CpuPercentage"
        assert trigger["metricNamespace"].lower() == "microsoft.web/serverfarms"
        assert _accessor(trigger["metricResourceUri"]) == "plan.id"
        assert trigger["timeAggregation"] == "Average"
        assert rule["scaleAction"]["type"] == "ChangeCount"
        assert rule["scaleAction"]["value"] == "1"
    assert out["metricTrigger"]["operator"] == "GreaterThan"
    assert out["metricTrigger"]["threshold"] == "scaleOutCpuPercent"
    assert quiet["metricTrigger"]["operator"] == "LessThan"
    assert quiet["metricTrigger"]["threshold"] == "scaleInCpuPercent"

    def minutes(duration: str) -> int:
        match = re.fullmatch(r"PT(\d+)M", duration)
        assert match, duration
        return int(match.group(1))

    # Quiet means quiet for longer than a burst: scale-in looks at a longer window and waits longer between steps.
    assert minutes(quiet["metricTrigger"]["timeWindow"]) > minutes(out["metricTrigger"]["timeWindow"])
    assert minutes(quiet["scaleAction"]["cooldown"]) >= minutes(out["scaleAction"]["cooldown"])
    sku = config(app["resources"]["plan"])["sku"]
    assert sku["capacity"]["operator"]["operands"]["true_value"] == "minInstances"

    main = model(bicep, "infra/azure/main.bicep")
    parameters = main["parameters"]
    defaults = {key: parameters[key]["default"] for key in parameters}
    assert 1 <= defaults["minInstances"] < defaults["maxInstances"]
    assert not defaults["appServiceSkuName"].startswith("B"), "the default plan must be able to autoscale"
    assert defaults["appServiceSkuName"] in next(
        d["argument"] for d in parameters["appServiceSkuName"]["decorators"] if d["type"] == "allowed"
    )
    # Scale out before the CPU alert fires; scale in only where the remaining instances stay under the scale-out
    # threshold (two instances at the scale-in level become one at twice that), else autoscale would flap.
    assert defaults["scaleOutCpuPercent"] < defaults["cpuThresholdPercent"]
    assert 2 * defaults["scaleInCpuPercent"] < defaults["scaleOutCpuPercent"]
    passed = config(main["modules"]["app"])["params"]
    for key in ("minInstances", "maxInstances", "scaleOutCpuPercent", "scaleInCpuPercent"):
        assert passed[key] == key
    # azd with nothing set deploys what `az deployment sub create` deploys.
    fallback = json.loads(azd_substitute((AZURE / "main.parameters.json").read_text(), FRESH_ENVIRONMENT))
    for key in ("appServiceSkuName", "minInstances", "maxInstances"):
        assert fallback["parameters"][key]["value"] == str(defaults[key]), key
    assert name == "autoscale"


def test_offline_telemetry_storage_is_local_to_each_instance(bicep: dict[str, Any]) -> None:
    """/home on App Service is one network share mounted on every instance of the plan; the exporters' stored
    batches must stay with their instance (see the comment on the setting in modules/app.bicep)."""
    from telemetry.config import TelemetryConfig
    from telemetry.setup import storage_directories

    directory = app_settings(bicep)["BOT_TELEMETRY_STORAGE_DIRECTORY"]
    assert directory.startswith("/tmp/"), "a folder of the instance's own file system"
    assert not directory.startswith("/home"), "/home is shared by every instance"
    folders = storage_directories(TelemetryConfig.from_env({"BOT_TELEMETRY_STORAGE_DIRECTORY": directory}))
    assert sorted(folders.values()) == [f"{directory}/{signal}" for signal in ("logs", "metrics", "traces")]


# The one output that is more than a name or an address: Application Insights' connection string, for the local loop
# (`azd env get-values`). Microsoft: the instrumentation key in it "isn't a security token or security key, and
# isn't considered a secret" (learn.microsoft.com/azure/azure-monitor/app/connection-strings); with disableLocalAuth,
# ingestion also needs an Entra ID token.
CONNECTION_STRING_OUTPUTS = {
    "infra/azure/modules/monitoring.bicep": {"connectionString"},
    "infra/azure/main.bicep": {"APPLICATIONINSIGHTS_CONNECTION_STRING"},
}


def test_outputs_carry_no_secret(bicep: dict[str, Any]) -> None:
    secure_parameters = set()
    for path in bicep["files"]:
        parsed = model(bicep, path)
        for name, parameter in parsed.get("parameters", {}).items():
            if any(decorator["type"] == "secure" for decorator in parameter["decorators"]):
                secure_parameters.add(name.lower())
    assert {"alertwebhookurl", "telemetryhashkey"} <= secure_parameters
    for path in bicep["files"]:
        outputs = model(bicep, path).get("outputs", {})
        allowed = CONNECTION_STRING_OUTPUTS.get(path, set())
        for name, output in outputs.items():
            text = json.dumps(output).lower()
            if name in allowed:
                assert "connectionstring" in text.replace("_", "")
                text = text.replace("connectionstring", "")
            forbidden = ("connectionstring", "instrumentationkey", "listkeys", "password", "secret", *secure_parameters)
            for word in forbidden:
                assert word not in text, f"{path} outputs {word} as {name}"


def test_the_workbook_mirrors_the_dashboard(bicep: dict[str, Any]) -> None:
    document = json.loads(WORKBOOK.read_text())
    assert document["version"] == "Notebook/1.0"
    names = {item["name"] for item in document["items"]}
    assert names >= WORKBOOK_PANELS
    placeholder = document["fallbackResourceIds"][0]
    assert placeholder in (AZURE / "modules" / "workbook.bicep").read_text()
    for item in document["items"]:
        if item["type"] == 3:
            assert item["content"]["timeContextFromParameter"] == "TimeRange"
            assert item["content"]["resourceType"] == "microsoft.insights/components"


# ---- azd, parameters, container -----------------------------------------------------------------------------------


def test_azure_yaml_provisions_this_template_and_deploys_the_bot(bicep: dict[str, Any]) -> None:
    python = _require(CHECKOV_PYTHON, "the checkov environment (it has PyYAML)")
    script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    azure_yaml = json.loads(_run([str(python), "-c", script, str(ROOT / "azure.yaml")]))
    assert azure_yaml["infra"] == {"provider": "bicep", "path": "infra/azure", "module": "main"}
    assert azure_yaml["services"] == {"bot": {"project": ".", "language": "py", "host": "appservice"}}
    assert (ROOT / azure_yaml["infra"]["path"] / f"{azure_yaml['infra']['module']}.bicep").is_file()
    # The web app azd deploys to is found by the tag azd-service-name = the service's key in azure.yaml.
    site = config(model(bicep, "infra/azure/modules/app.bicep")["resources"]["site"])
    assert site["tags"]["function"]["parameters"]["arg_2"] == {"'azd-service-name'": next(iter(azure_yaml["services"]))}


# ---- what azd reads: scope, parameters, outputs ----------------------------------------------------------------------

_AZD_EXPRESSION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(=)([^}]*))?\}")
# What `azd env new dev --location X --subscription Y` puts into an environment; nothing else is set.
FRESH_ENVIRONMENT = {"AZURE_ENV_NAME": "dev", "AZURE_LOCATION": "westeurope", "AZURE_SUBSCRIPTION_ID": "0" * 8}


def azd_substitute(text: str, environment: dict[str, str]) -> str:
    """azd's envsubst over main.parameters.json: ${NAME}, or ${NAME=default} when NAME is unset or empty."""

    def value(match: re.Match[str]) -> str:
        name, has_default, default = match.groups()
        found = environment.get(name, "")
        return found if found or not has_default else default

    return _AZD_EXPRESSION.sub(value, text)


def azd_prompts(parameters: dict[str, Any], given: dict[str, Any]) -> set[str]:
    """Parameters azd would ask for (and `--no-prompt` fail on), by azd's documented rules (Azure/azure-dev#2896):
    a parameter without a default that is missing from the file or resolves to an empty string is prompted for,
    unless its @metadata asks azd to generate it; a parameter with a default never is."""
    prompted = set()
    for name, parameter in parameters.items():
        if parameter.get("default") is not None:
            continue
        metadata = [d["argument"] for d in parameter["decorators"] if d["type"] == "metadata"]
        if any(m.get("azd", {}).get("type") == "generate" for m in metadata):
            continue
        if name not in given or given[name].get("value") in ("", None):
            prompted.add(name)
    return prompted


def test_azd_up_with_a_fresh_environment_prompts_for_nothing(bicep: dict[str, Any]) -> None:
    parameters = model(bicep, "infra/azure/main.bicep")["parameters"]
    text = (AZURE / "main.parameters.json").read_text()
    given = json.loads(azd_substitute(text, FRESH_ENVIRONMENT))["parameters"]
    assert set(given) <= set(parameters), f"not parameters of main.bicep: {set(given) - set(parameters)}"
    assert azd_prompts(parameters, given) == set()
    # Without the environment's values the same rules do prompt: the check above is not vacuous.
    unset = json.loads(azd_substitute(text, {}))["parameters"]
    assert azd_prompts(parameters, unset) == {"environmentName", "location"}
    assert given["environmentName"]["value"] == "dev"
    assert given["location"]["value"] == "westeurope"
    # Mapped variables without a value fall back to the Bicep default, which must be the documented "off" value.
    assert parameters["alertEmailAddress"]["default"] == ""
    assert given["alertEmailAddress"]["value"] == ""
    assert parameters["resourceGroupName"]["default"] == ""
    # Values azd substitutes are strings; ARM converts them for int and bool parameters, so they must convert.
    for name, entry in given.items():
        kind, value = parameters[name]["type"], entry["value"]
        if kind == "int":
            assert value.lstrip("-").isdigit(), f"{name}: {value!r} is no int"
        if kind == "bool":
            assert value in ("true", "false"), f"{name}: {value!r} is no bool"


def test_the_parameters_file_maps_the_documented_azd_variables() -> None:
    text = (AZURE / "main.parameters.json").read_text()
    mapped = {name: variable for name, variable in re.findall(r'"(\w+)":\s*\{\s*"value":\s*"\$\{(\w+)', text)}
    assert mapped["environmentName"] == "AZURE_ENV_NAME"
    assert mapped["location"] == "AZURE_LOCATION"
    assert mapped["resourceGroupName"] == "AZURE_RESOURCE_GROUP"
    assert mapped["alertEmailAddress"] == "BOT_ALERT_EMAIL"
    guide = (ROOT / "docs" / "deploy-azure.md").read_text()
    for variable in set(mapped.values()) - {"AZURE_ENV_NAME", "AZURE_LOCATION"}:
        assert f"`{variable}`" in guide, f"docs/deploy-azure.md does not document {variable}"


def test_the_template_creates_its_resource_group_at_subscription_scope(bicep: dict[str, Any]) -> None:
    main = model(bicep, "infra/azure/main.bicep")
    assert main["globals"]["scope"]["value"] == "subscription"
    rg = main["resources"]["rg"]
    assert rg["type"] == "Microsoft.Resources/resourceGroups"
    name = rg["config"]["name"]["operator"]["operands"]
    assert name["true_value"] == "rg-${environmentName}"
    assert name["false_value"] == "resourceGroupName"
    assert rg["config"]["tags"] == "allTags"
    tags = main["variables"]["allTags"]["value"]["function"]["parameters"]
    assert tags["arg_2"]["'azd-env-name'"] == "environmentName", "azd finds the group by its azd-env-name tag"
    assert main["modules"], "no module"
    for name, module in main["modules"].items():
        body = module["config"].get("config", module["config"])  # a conditional module nests its body
        assert body["scope"] == "rg", f"module {name} is not deployed into the environment's group"
    # resourceGroup() does not exist at subscription scope: it would fail the deployment.
    assert "resourceGroup()" not in (AZURE / "main.bicep").read_text()
    assert "uniqueString(subscription().id, environmentName, location)" in (AZURE / "main.bicep").read_text()


AZD_OUTPUTS = {
    "AZURE_LOCATION",
    "AZURE_TENANT_ID",
    "AZURE_RESOURCE_GROUP",
    "SERVICE_BOT_NAME",
    "SERVICE_BOT_URI",
    "BOT_MESSAGING_ENDPOINT",
    "BOT_HEALTH_URL",
    "BOT_APP_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
}


def test_outputs_give_azd_and_the_local_loop_what_they_read(bicep: dict[str, Any]) -> None:
    outputs = model(bicep, "infra/azure/main.bicep")["outputs"]
    assert set(outputs) >= AZD_OUTPUTS
    assert all(output["type"] == "string" for output in outputs.values())
    # The local bot reads this variable itself (telemetry/config.py), so `azd env get-values` feeds it directly.
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in variables_read_by_the_bot()
    assert outputs["SERVICE_BOT_URI"]["value"] == "https://${app.outputs.defaultHostName}"
    assert outputs["BOT_MESSAGING_ENDPOINT"]["value"].endswith("/api/messages")
    # Outputs that would reconfigure a local bot into a deployed one (authentication on) must not be there.
    assert not set(outputs) & {"MicrosoftAppId", "MicrosoftAppType", "MicrosoftAppTenantId", "PORT", "BOT_HOST"}
    guide = (ROOT / "docs" / "deploy-azure.md").read_text()
    for name in AZD_OUTPUTS:
        assert name in guide, f"docs/deploy-azure.md does not mention the output {name}"


def test_the_dockerfile_runs_the_bot_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.1\d-slim$", text, re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+$", text, re.MULTILINE)
    assert 'CMD ["python", "-m", "bot"]' in text
    assert "HEALTHCHECK" in text
    assert "/healthz" in text
    assert "BOT_HOST=0.0.0.0" in text
    copied = re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE)
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    ignore = (ROOT / ".dockerignore").read_text()
    for sources in copied:
        for source in sources.split():
            assert f"!{source}" in ignore or f"!{source}/" in ignore, f".dockerignore leaves {source} out"


def test_the_deployment_guide_covers_the_walkthrough() -> None:
    guide = (ROOT / "docs" / "deploy-azure.md").read_text()
    for needle in (
        "azd up",
        "--no-prompt",
        "az deployment sub create",
        "azd down",
        "Teams",
        "Web Chat",
        "Emulator",
        "pycep-parser",
        "checkov",
        "Kusto",
        "customMetrics",
        "customEvents",
        "dependencies",
    ):
        assert needle in guide, f"docs/deploy-azure.md does not mention {needle}"


# Files a developer's checkout holds besides the repository's own: secrets, caches, virtualenvs, results, state.
LOCAL_STATE = (
    ".env",
    ".env.local",
    "bot/.env",
    "telemetry/production.env",
    ".venv/lib/site.py",
    ".venv-bicep/bin/bicep",
    "node_modules/x/index.js",
    "infra/azure/kql-check/node_modules/y/index.js",
    "bot/__pycache__/app.cpython-311.pyc",
    ".hypothesis/examples/1",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/x",
    ".pytest_cache/v/x",
    "report/index.html",
    "loadtest-results/run.csv",
    "soak-results/run.csv",
    "data/state.db",
    "bot/data/conversations.json",
    "state.db",
    "bot/state.sqlite3",
    "bot.log",
    "key.pem",
)
RUNTIME_FILES = ("pyproject.toml", "README.md", "bot/__main__.py", "bot/knowledge/knowledge.json", "telemetry/setup.py")


def _package(root: Path, ignore_file: str) -> list[str]:
    """The files a package built from `root` with the ignore file would hold: gitignore rules for azd's
    `.webappignore`, Docker's (the last matching pattern decides, an excluded folder's files can be re-included)."""
    import pathspec

    lines = (ROOT / ignore_file).read_text().splitlines()
    spec: pathspec.PathSpec = (
        pathspec.GitIgnoreSpec.from_lines(lines)
        if ignore_file == ".webappignore"
        else pathspec.PathSpec.from_lines("gitignore", lines)
    )
    files = [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file() or path.is_symlink()]
    return sorted(file for file in files if not spec.match_file(file))


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The repository's files plus the local state of a developer's checkout."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in [*tracked.split(), *LOCAL_STATE]:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("x")
    return tmp_path


@pytest.mark.parametrize("ignore_file", [".webappignore", ".dockerignore"])
def test_deploy_packages_hold_the_bot_and_no_secrets_or_local_state(
    checkout: Path, ignore_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    package = _package(checkout, ignore_file)
    with capsys.disabled():
        print(f"\n{ignore_file}: {len(package)} files: {sorted({file.split('/')[0] for file in package})}")
    assert [file for file in package if file in LOCAL_STATE] == []
    top_level = ["README.md", "pyproject.toml"]
    if ignore_file == ".webappignore":  # App Service's build (and azd restore) install from requirements.txt
        top_level = ["LICENSE", "README.md", "pyproject.toml", "requirements.txt"]
    assert [file for file in package if not file.startswith(("bot/", "telemetry/", "infra/"))] == top_level
    assert set(RUNTIME_FILES) <= set(package)
    assert "infra/dev/constraints.txt" in package
    assert not [file for file in package if file.startswith("tests/") or "__pycache__" in file]
