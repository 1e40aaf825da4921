#!/usr/bin/env bash
# The test command: from a fresh clone with only Python 3.11 (and Node 20 for the
# OIDC provider fixtures), create a virtualenv, install everything, run pytest on
# SQLite and, when FLOWKER_TEST_POSTGRES_URL is set, on PostgreSQL too. Installs are
# skipped when nothing they depend on has changed; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${FLOWKER_VENV:-$root/.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# Reinstall only when what pip reads has changed (editable installs pick up code changes
# by themselves): the package metadata, the plugins' metadata and the Python version.
install_stamp="$venv/.flowker-install-stamp"
install_inputs=$(cd "$root" && cat setup.cfg pyproject.toml flowker/__init__.py plugins/*/pyproject.toml plugins/*/setup.cfg 2>/dev/null; "$venv/bin/python" -VV)
install_hash=$(printf '%s' "$install_inputs" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$install_stamp" 2>/dev/null)" != "$install_hash" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
  for plugin in "$root"/plugins/*/; do
    [ -f "$plugin/pyproject.toml" ] && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$plugin"
  done
  echo "$install_hash" >"$install_stamp"
fi
servers="$root/tests/servers"
if [ -f "$servers/package.json" ]; then
  npm_hash=$(cat "$servers/package.json" "$servers/package-lock.json" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$servers/node_modules/.flowker-stamp" 2>/dev/null)" != "$npm_hash" ]; then
    (cd "$servers" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$npm_hash" >"$servers/node_modules/.flowker-stamp"
  fi
fi

# Debian packages the tests start for real: prometheus (tests/e2e/test_e2e_metrics.py) and
# chromium (tests/console, driven by Playwright through executable_path: Playwright's own
# browser download is never used). Installed once; the binary itself is the stamp.
apt_missing=()
[ -x /usr/bin/prometheus ] || apt_missing+=(prometheus)
[ -x /usr/bin/chromium ] || apt_missing+=(chromium)
if [ ${#apt_missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${apt_missing[@]}" \
      || { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${apt_missing[@]}"; }
  else
    echo "NOTE: apt-get not found: install ${apt_missing[*]} yourself, or their tests fail." >&2
  fi
fi

if [ -z "${FLOWKER_TEST_POSTGRES_URL:-}" ]; then
  echo "NOTE: FLOWKER_TEST_POSTGRES_URL is not set: the PostgreSQL tests will NOT run."
fi
# Lint, format and type checks first (configured in pyproject.toml): a finding fails the command.
if ! "$venv/bin/ruff" check flowker tests benchmarks plugins examples; then
  echo "FAILED: ruff found problems (above); fix them before the tests run." >&2
  exit 1
fi
if ! "$venv/bin/ruff" format --check flowker tests benchmarks plugins examples; then
  echo "FAILED: files above are not formatted; run: $venv/bin/ruff format flowker tests benchmarks plugins examples" >&2
  exit 1
fi
if ! "$venv/bin/mypy"; then
  echo "FAILED: mypy found type errors (above); fix them before the tests run." >&2
  exit 1
fi
exec "$venv/bin/python" -m pytest "$@"
