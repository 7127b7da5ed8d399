#!/usr/bin/env bash
# Installs everything otel-chatbot needs into ./.venv, with the pinned versions of infra/dev/constraints.txt.
#   bash infra/dev/install.sh          the bot (and the load test and the weekly report)
#   bash infra/dev/install.sh --test   also the test tools and the Debian packages the tests start
set -euo pipefail
cd "$(dirname "$0")/../.."

want_tests=false
[ "${1:-}" = "--test" ] && want_tests=true

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "otel-chatbot needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi

extras="load,report"
$want_tests && extras="dev,load,report"
echo "==> installing Python packages (.[${extras}], pinned by infra/dev/constraints.txt)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
  -c infra/dev/constraints.txt -e ".[${extras}]"
if $want_tests; then
  # Offline checks of the Azure template: pycep-parser, checkov (each in its own venv), the Kusto language service.
  PYTHON="$python" bash infra/dev/install-azure-checks.sh
  # The tests start real Prometheus and Alertmanager processes (Debian's packages; their services stay off)
  # and a short run of the benchmark with wrk.
  missing=()
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
  command -v wrk >/dev/null || missing+=(wrk)  # the load generator of the performance benchmark
  command -v haproxy >/dev/null || missing+=(haproxy)  # the balancer in front of the cluster drill's instances
  # The Web Chat test: Debian's Chromium (never a browser download), Node.js and npm for tests/webchat.
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v npm >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo"
    $as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # Web Chat, the Direct Line emulator and the browser driver, as locked in tests/webchat/package-lock.json
  # (install scripts off: nothing is downloaded besides the packages). Skipped when that lock is already installed.
  if ! cmp -s tests/webchat/package-lock.json tests/webchat/node_modules/.installed-lock.json; then
    echo "==> installing npm packages (tests/webchat, npm ci)"
    (cd tests/webchat && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp tests/webchat/package-lock.json tests/webchat/node_modules/.installed-lock.json
  fi
  # Azurite, the Azure Storage emulator the blob state tests start (pinned 3.35.0: newer releases need Node 22).
  if ! cmp -s infra/azurite/package-lock.json infra/azurite/node_modules/.installed-lock.json; then
    echo "==> installing npm packages (infra/azurite, npm ci)"
    (cd infra/azurite && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    cp infra/azurite/package-lock.json infra/azurite/node_modules/.installed-lock.json
  fi
fi
echo "==> ready: .venv/bin/python -m bot"
