#!/usr/bin/env bash
# Installs the tools that check infra/azure offline (tests/test_azure_infra.py):
#   .venv-bicep                     the latest pycep-parser, which parses every .bicep file
#   .venv-checkov                   checkov (it pins an older pycep-parser, hence its own virtualenv)
#   infra/azure/kql-check/node_modules   the Kusto language service, run with node
# Versions are pinned in infra/azure/checks/requirements-*.txt and infra/azure/kql-check/package-lock.json.
# Safe to run again: an environment whose pins have not changed is left as it is.
set -euo pipefail
cd "$(dirname "$0")/../.."

python=${PYTHON:-python3}

# venv DIRECTORY REQUIREMENTS: create the virtualenv and install the pinned requirements, unless already done.
venv() {
  local dir=$1 requirements=$2 stamp
  stamp="$dir/.installed-requirements"
  if [ -x "$dir/bin/python" ] && [ -f "$stamp" ] && cmp -s "$requirements" "$stamp"; then
    echo "==> $dir is up to date"
    return
  fi
  echo "==> installing $requirements into $dir"
  [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
  printf '*\n' > "$dir/.gitignore" # keeps the environment out of git without touching the project's .gitignore
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$requirements"
  "$dir/bin/python" -m pip check --disable-pip-version-check >/dev/null
  cp "$requirements" "$stamp"
}

venv .venv-bicep infra/azure/checks/requirements-bicep.txt
venv .venv-checkov infra/azure/checks/requirements-checkov.txt

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "install-azure-checks: node and npm are needed for the KQL check (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
lock=infra/azure/kql-check/package-lock.json
installed=infra/azure/kql-check/node_modules/.package-lock.json
if [ -f "$installed" ] && [ "$installed" -nt "$lock" ]; then
  echo "==> infra/azure/kql-check/node_modules is up to date"
else
  echo "==> npm ci in infra/azure/kql-check"
  (cd infra/azure/kql-check && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
echo "==> Azure checks ready: .venv/bin/python -m pytest tests/test_azure_infra.py"
