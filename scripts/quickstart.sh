#!/usr/bin/env bash
# Quick start: from a fresh clone with only Python 3.11, install Flowker into .venv,
# start the local sample service the example executors call (127.0.0.1:8700), and
# serve the API on embedded SQLite (flowker-data/flowker.db) with examples/ applied
# and activated. Ctrl-C stops Flowker, and the sample service with it.
#
# Settings: FLOWKER_PORT (8000), SAMPLE_SERVICE_PORT (8700 is what the example
# executors call), PYTHON (python3.11), and any FLOWKER_* variable.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${FLOWKER_VENV:-$root/.venv}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
port=${FLOWKER_PORT:-8000}
sample_port=${SAMPLE_SERVICE_PORT:-8700}
data="$root/flowker-data"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "quickstart: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating $venv"
  "$python" -m venv "$venv"
fi
echo "Installing Flowker into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root"

mkdir -p "$data"
chmod 700 "$data"
export FLOWKER_DATABASE_URL=${FLOWKER_DATABASE_URL:-sqlite:///$data/flowker.db}
# One API key for this checkout, kept (mode 600) in the git-ignored data folder.
if [ -z "${FLOWKER_API_KEYS:-}" ]; then
  if [ ! -s "$data/api-key" ]; then
    (umask 077 && "$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$data/api-key")
  fi
  export FLOWKER_API_KEYS="quickstart:$(cat "$data/api-key")"
fi
first_key=${FLOWKER_API_KEYS%%,*}   # the first of the keys, as name:key or key
api_key=${first_key#*:}

# The sample service's OIDC issuer (customer-onboarding) is plain http on 127.0.0.1:
# allowed here for this local demo only, never in production.
export OAUTHLIB_INSECURE_TRANSPORT=${OAUTHLIB_INSECURE_TRANSPORT:-1}
# The examples' secrets are {$env: NAME} references; any value works against the sample service.
export FRAUD_API_TOKEN=${FRAUD_API_TOKEN:-dev-fraud-token}
export LEDGER_API_KEY=${LEDGER_API_KEY:-dev-ledger-key}
export PAYMENTS_WEBHOOK_TOKEN=${PAYMENTS_WEBHOOK_TOKEN:-dev-payments-webhook-token}
export KYC_CLIENT_SECRET=${KYC_CLIENT_SECRET:-dev-kyc-secret}
export CORE_BANKING_PASSWORD=${CORE_BANKING_PASSWORD:-dev-banking-password}
export ONBOARDING_WEBHOOK_TOKEN=${ONBOARDING_WEBHOOK_TOKEN:-dev-onboarding-webhook-token}
export WAREHOUSE_API_KEY=${WAREHOUSE_API_KEY:-dev-warehouse-key}
export PAYMENTS_API_TOKEN=${PAYMENTS_API_TOKEN:-dev-payments-token}
export CARRIER_API_KEY=${CARRIER_API_KEY:-dev-carrier-key}

"$venv/bin/python" "$root/examples/sample_service.py" --port "$sample_port" &
sample_pid=$!
stop_sample() {
  if kill -0 "$sample_pid" 2>/dev/null; then
    kill "$sample_pid" 2>/dev/null || true
    wait "$sample_pid" 2>/dev/null || true
  fi
}
trap stop_sample EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait (at most 10 s) until the sample service answers.
for _ in $(seq 1 50); do
  if "$venv/bin/python" -c "import socket,sys; socket.create_connection(('127.0.0.1', $sample_port), 0.2).close()" 2>/dev/null; then
    break
  fi
  kill -0 "$sample_pid" 2>/dev/null || { echo "quickstart: the sample service did not start (port $sample_port taken?)" >&2; exit 1; }
  sleep 0.2
done

base="http://127.0.0.1:$port"
# The flowker command is in $venv/bin, which is not activated: the lines below name it,
# and the exports make the other terminal's commands use this database and server.
cat <<EOF

Flowker quick start
  API:          $base   (OpenAPI: curl -H 'X-API-Key: $api_key' $base/openapi.json)
  API key:      $api_key
  Database:     $FLOWKER_DATABASE_URL
  Sample service (the example executors' backend): http://127.0.0.1:$sample_port

In another terminal (the flowker command is $venv/bin/flowker):
  export PATH="$venv/bin:\$PATH"
  export FLOWKER_DATABASE_URL=$FLOWKER_DATABASE_URL
  export FLOWKER_URL=$base KEY='$api_key'

  curl -s -X POST \$FLOWKER_URL/v1/webhooks/payments \\
    -H "X-API-Key: \$KEY" -H 'X-Webhook-Token: $PAYMENTS_WEBHOOK_TOKEN' \\
    -H 'Content-Type: application/json' \\
    -d '{"transactionId": "tx-1", "amount": 120.5, "currency": "EUR", "payer": "alice"}'
  flowker audit verify        # checks the chain of the database above

Ctrl-C stops Flowker and the sample service.

EOF

"$venv/bin/flowker" serve --bind "127.0.0.1:$port" --specs "$root/examples"
