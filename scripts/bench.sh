#!/usr/bin/env bash
# Measures the gateway with ../shared/bench: a release build on CPU 1, a route `gpt-4o-mini`
# to the nginx mock upstream on CPU 0, against the direct call and a bare nginx proxy.
# Needs: nginx-light, libnginx-mod-http-lua, libnginx-mod-http-echo (Debian), oha and ssebench
# as ../shared/bench/README.md installs them, PostgreSQL on 127.0.0.1:5432 (trust).
#   scripts/bench.sh [REPS] [DURATION_SECS] [SCENARIOS] [STREAM_CONCURRENCY]
# CONTROLS=off measures the bare request path; by default every control is on: org and key
# budgets (reserve and settle), a key rate limit, the PII guardrail in `redact`, request logs.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${1:-3}"
DURATION="${2:-15}"
SCENARIOS="${3:-tp,lat,stream}"
STREAM_CONC="${4:-16}"
BENCH=../shared/bench
DB=pc_bench
ADMIN="postgres://postgres@127.0.0.1:5432/$DB"
APP="postgres://portcullis_app@127.0.0.1:5432/$DB"
BIN=target/release/portcullis
PIDFILE=/tmp/portcullis-bench.pid
export PORTCULLIS_SECRETS__KEK="${PORTCULLIS_SECRETS__KEK:-$(head -c 32 /dev/urandom | base64)}"

cargo build --release -p portcullis
psql -X -q "postgres://postgres@127.0.0.1:5432/postgres" -c "drop database if exists $DB with (force)" -c "create database $DB"
PORTCULLIS_DATABASE__ADMIN_URL="$ADMIN" PORTCULLIS_DATABASE__URL="$APP" "$BIN" migrate
MASTER=$(PORTCULLIS_DATABASE__URL="$APP" PORTCULLIS_BOOTSTRAP_PASSWORD="bench password 123" \
  "$BIN" bootstrap --org Bench --email bench@example.com | sed -n 's/^master key: //p')
ORG=$(PORTCULLIS_DATABASE__URL="$APP" "$BIN" audit verify --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["org_id"])')

"$BENCH/mock.sh" start 0
mkdir -p /tmp/bench-refproxy
if ! curl -fsS -o /dev/null http://127.0.0.1:28090/health 2>/dev/null; then
  (taskset -c 1 nginx -p /tmp/bench-refproxy -c "$(realpath $BENCH/mock/nginx-refproxy.conf)" & echo $! > /tmp/bench-refproxy/launcher.pid)
fi

PORTCULLIS_DATABASE__URL="$APP" PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_SERVER__LISTEN=127.0.0.1:8080 \
  PORTCULLIS_PROVIDERS__ALLOW_PRIVATE_NETWORKS='["127.0.0.0/8"]' \
  PORTCULLIS_SERVER__PLAINTEXT=true taskset -c 1 "$BIN" serve & echo $! > "$PIDFILE"
trap 'kill "$(cat $PIDFILE)" 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:8080/readyz && break; sleep 0.2; done

api() { curl -fsS -H "authorization: Bearer $MASTER" -H 'content-type: application/json' "$@"; }
CRED=$(api "http://127.0.0.1:8080/admin/v1/orgs/$ORG/credentials" \
  -d '{"name":"mock","provider":"openai_compatible","api_key":"sk-bench","base_url":"http://127.0.0.1:28080/v1"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["credential_id"])')
api -X PUT "http://127.0.0.1:8080/admin/v1/orgs/$ORG/routes/gpt-4o-mini" \
  -d "{\"targets\":[{\"credential_id\":\"$CRED\",\"model\":\"gpt-4o-mini\"}]}" > /dev/null
if [ "${CONTROLS:-on}" = on ]; then
  api -X PATCH "http://127.0.0.1:8080/admin/v1/orgs/$ORG/settings" \
    -d '{"budget_micro_usd": 100000000000, "budget_period": "monthly", "pii_guardrail": "redact", "logging_level": "metadata"}' > /dev/null
  KEY_BODY='{"name":"bench","budget_micro_usd":100000000000,"rpm_limit":100000000}'
else
  KEY_BODY='{"name":"bench"}'
fi
KEY=$(api "http://127.0.0.1:8080/admin/v1/orgs/$ORG/keys" -d "$KEY_BODY" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

mkdir -p target/bench
sed "s/REPLACE_WITH_A_VIRTUAL_KEY/$KEY/" "$BENCH/targets.toml" > target/bench-targets.toml
python3 "$BENCH/bench.py" suite --targets target/bench-targets.toml --reps "$REPS" \
  --duration "$DURATION" --scenarios "$SCENARIOS" --rates 400 --stream-conc "$STREAM_CONC"
latest=$(ls -td target/bench/*/ | head -n1)
python3 "$BENCH/bench.py" table "$latest/results.jsonl"
