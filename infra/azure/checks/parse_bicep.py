"""Parses .bicep files with pycep-parser and prints what it read, as JSON, for tests/test_azure_infra.py.

Run with the interpreter of .venv-bicep (infra/dev/install-azure-checks.sh):
    .venv-bicep/bin/python infra/azure/checks/parse_bicep.py FILE.bicep ...
Output: {"pycep_parser": VERSION, "files": {FILE: {"ok": true, "model": {...}} | {"ok": false, "error": "..."}}}
Exit status 0 even when a file does not parse (the test reports which one and why).
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

from pycep import BicepParser


def main(paths: list[str]) -> int:
    parser = BicepParser()
    files: dict[str, dict[str, object]] = {}
    for path in paths:
        try:
            model = parser.parse(file_path=Path(path))
        except Exception as error:  # any parse failure is a finding, reported per file
            files[path] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        else:
            files[path] = {"ok": True, "model": model}
    json.dump({"pycep_parser": metadata.version("pycep-parser"), "files": files}, sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
