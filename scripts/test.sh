#!/usr/bin/env bash
# The test command: from a fresh clone with only Python 3.11 (and Node 20 for the
# OIDC provider fixtures), create a virtualenv, install everything, run pytest on
# SQLite and, when FLOWKER_TEST_POSTGRES_URL is set, on PostgreSQL too.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${FLOWKER_VENV:-$root/.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
for plugin in "$root"/plugins/*/; do
  [ -f "$plugin/pyproject.toml" ] && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$plugin"
done
if [ -f "$root/tests/servers/package.json" ]; then
  (cd "$root/tests/servers" && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ -z "${FLOWKER_TEST_POSTGRES_URL:-}" ]; then
  echo "NOTE: FLOWKER_TEST_POSTGRES_URL is not set: the PostgreSQL tests will NOT run."
fi
# Lint and type checks first (configured in pyproject.toml): a finding fails the command.
if ! "$venv/bin/ruff" check flowker tests benchmarks plugins examples; then
  echo "FAILED: ruff found problems (above); fix them before the tests run." >&2
  exit 1
fi
if ! "$venv/bin/mypy"; then
  echo "FAILED: mypy found type errors (above); fix them before the tests run." >&2
  exit 1
fi
exec "$venv/bin/python" -m pytest "$@"
