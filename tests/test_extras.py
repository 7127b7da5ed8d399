"""Each install of pyproject.toml brings what its command imports: the bot's telemetry needs only the dependencies,
`python -m telemetry.weekly` the dependencies and the `report` extra (matplotlib for its charts).

Read from the source (every import, also those inside functions) and from the installed distributions' metadata, so
a new import without its dependency fails here rather than on a machine installed without the test tools."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
WEEKLY = ROOT / "telemetry" / "weekly"
OWN_PACKAGES = frozenset({"bot", "telemetry", "loadtest", "tests"})


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(paths: Iterable[Path]) -> set[str]:
    """Absolute imports of other packages than the project's own and the standard library; `from a import b` gives
    `a.b` (b may be a module of a namespace package such as `opentelemetry`)."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            found |= {name for name in names if name.split(".")[0] not in {*sys.stdlib_module_names, *OWN_PACKAGES}}
    return found


@cache
def distribution_of_file() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for distribution in importlib.metadata.distributions():
        for file in distribution.files or ():
            if file.suffix in {".py", ".so", ".pyd"}:
                files[Path(str(distribution.locate_file(file))).resolve()] = canonical(distribution.metadata["Name"])
    return files


def distribution_of(name: str) -> str:
    """The distribution that installed the module `name`, or the module `name` is an attribute of."""
    module = name
    while module:
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # an attribute of a module, not a module of a package
            spec = None
        if spec is not None and spec.origin:
            return distribution_of_file()[Path(spec.origin).resolve()]
        module = module.rpartition(".")[0]
    raise AssertionError(f"{name} is not installed")


def installed_by(requirements: Iterable[str]) -> set[str]:
    """The distributions pip installs for these requirements: them and what they require, without their extras."""
    wanted = [Requirement(text) for text in requirements]
    installed: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = canonical(requirement.name)
        if name in installed:
            continue
        installed.add(name)
        for text in importlib.metadata.distribution(name).requires or ():
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                wanted.append(needed)
    return installed


@pytest.mark.parametrize(
    ("sources", "extras"),
    [
        (sorted(path for path in (ROOT / "telemetry").rglob("*.py") if WEEKLY not in path.parents), ()),
        ([*sorted(WEEKLY.rglob("*.py")), ROOT / "telemetry" / "catalog.py"], ("report",)),
    ],
    ids=["telemetry: the dependencies", "python -m telemetry.weekly: the dependencies and the report extra"],
)
def test_each_install_brings_what_its_code_imports(sources: list[Path], extras: tuple[str, ...]) -> None:
    requirements = [
        *PROJECT["dependencies"],
        *(text for extra in extras for text in PROJECT["optional-dependencies"][extra]),
    ]
    installed = installed_by(requirements)
    missing = {module: distribution_of(module) for module in imported_modules(sources)}
    missing = {module: distribution for module, distribution in missing.items() if distribution not in installed}
    assert not missing, f"imported, but not installed by {extras or 'the dependencies'}: {missing}"


def test_the_report_extra_is_needed_for_the_charts() -> None:
    """matplotlib comes with the report extra, not with the bot's dependencies (the bot never draws)."""
    assert "matplotlib" not in installed_by(PROJECT["dependencies"])
    assert {name.split(".")[0] for name in imported_modules(WEEKLY.rglob("*.py"))} == {"matplotlib"}
    assert distribution_of("matplotlib.figure") in installed_by(PROJECT["optional-dependencies"]["report"])
