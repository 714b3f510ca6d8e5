#!/usr/bin/env bash
# bis's queries for prometheus-postgres-exporter: the exporter (Debian's
# package) runs against a database with bis in use, and its /metrics has the
# queue per channel and status, pending among them, and the restocks.
#
# Runs against the throwaway cluster of test/run.sh: PGHOST, PGPORT and
# PGUSER come from the environment.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

db=bis_exporter
admin_db=${PGDATABASE:-postgres}
exporter=/usr/bin/prometheus-postgres-exporter
queries=$bis_root/monitoring/postgres-exporter-queries.yaml
work=$(mktemp -d /tmp/bis-exporter.XXXXXX)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<'SQL'
CREATE EXTENSION bis;
SELECT bis.upsert_items('[{"sku": "E-1", "title": "Easel"}]');
SELECT bis.upsert_contact('c' || n, email => 'c' || n || '@example.com') FROM generate_series(1, 3) n;
SELECT bis.subscribe('c' || n, 'E-1') FROM generate_series(1, 3) n;
SELECT bis.set_stock('E-1', 0), bis.set_stock('E-1', 4);
SELECT bis.ack(ARRAY(SELECT id FROM bis.claim('m', 1)), 'm');
SQL

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$db sslmode=disable" \
    "$exporter" --disable-default-metrics --extend.query-path="$queries" \
    --web.listen-address="127.0.0.1:$port" >"$work/exporter.log" 2>&1 &
pid=$!
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/metrics" >"$work/metrics" 2>/dev/null && grep -q '^bis_' "$work/metrics" && break
    sleep 0.2
done

passed=0
failed=0
expect() {  # name, got, expected
    if [ "$2" = "$3" ]; then echo "ok   $1"; passed=$((passed + 1))
    else echo "FAIL $1: got \"$2\", expected \"$3\""; failed=$((failed + 1)); fi
}
# the value of metric $1 whose labels include each of $2...
metric() {
    local name=$1 line
    shift
    line=$(grep -E "^$name(\{| )" "$work/metrics" || true)
    for label in "$@"; do line=$(grep -F "$label" <<<"$line" || true); done
    awk '{ print $NF }' <<<"$line"
}
expect "pending email notifications" "$(metric bis_queue_notifications 'channel="email"' 'status="pending"')" 2
expect "sent email notifications" "$(metric bis_queue_notifications 'channel="email"' 'status="sent"')" 1
expect "a pair with none is there, at zero" "$(metric bis_queue_notifications 'channel="sms"' 'status="dead"')" 0
expect "restocks counted" "$(metric bis_restocks_total)" 1
expect "no restock still open" "$(metric bis_restocks_open)" 0
if [ "$failed" -ne 0 ]; then cat "$work/exporter.log"; head -40 "$work/metrics"; fi
echo "exporter: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
