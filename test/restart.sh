#!/usr/bin/env bash
# Crash test: a restock of 5,000 subscribers is expanded in chunks of 1,000;
# the server is stopped with "immediate" (as by a crash) in the middle of the
# expansion and of a mailer's batch, restarted, and drained.  Every
# subscription must end with exactly one notification, and every
# notification delivered.
#
# Runs against the throwaway cluster of test/run.sh: PGHOST, PGPORT, PGUSER
# and BIS_PGDATA (its data directory) come from the environment.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

db=bis_restart
admin_db=${PGDATABASE:-postgres}
pg_ctl=$(pg_config --bindir)/pg_ctl
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }
cleanup() { psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT


psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" 2>/dev/null
q >/dev/null <<'SQL'
CREATE EXTENSION bis;
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak"}]');
INSERT INTO bis.contacts (contact_id, email) SELECT 'c' || n, 'c' || n || '@example.com' FROM generate_series(1, 5000) n;
INSERT INTO bis.subscriptions (contact_id, sku) SELECT 'c' || n, 'A-1' FROM generate_series(1, 5000) n;
SELECT bis.set_stock('A-1', 0);
SQL
expect "the restock enqueues one chunk in the stock transaction" 1000 "$(q -c "SELECT bis.set_stock('A-1', 5)")"
expect "a mailer claims 500 of them" 500 "$(q -c "SELECT count(*) FROM bis.claim('m1', 500)")"

# a crash in the middle of an expansion and of a claim: both are open
psql -X -q -d "$db" -c "BEGIN" -c "SELECT bis.expand(1)" -c "SELECT count(*) FROM bis.claim('m2', 300)" \
    -c "SELECT pg_sleep(30)" >/dev/null 2>&1 &
sleeper=$!
sleep 1
"$pg_ctl" -D "$BIS_PGDATA" -m immediate -w -s stop
wait "$sleeper" || true
"$pg_ctl" -D "$BIS_PGDATA" -l "$BIS_PGDATA/server.log" -w -s start

expect "after the crash, what the open transactions did is gone" "expanding|1000" \
    "$(q -c "SELECT expansion || '|' || enqueued FROM bis.restock_events")"
# drain as a mailer would; m1's lease never runs out by itself here, so give its rows back
q -c "SELECT bis.release(array_agg(id), 'm1') FROM bis.notifications WHERE claimed_by = 'm1'" >/dev/null
for _ in $(seq 1 20); do
    n=$(q -c "WITH c AS (SELECT id FROM bis.claim('m3', 1000))
              SELECT CASE WHEN count(*) > 0 THEN bis.ack(array_agg(id), 'm3') ELSE 0 END FROM c")
    [ "$n" = 0 ] && break
done
expect "the expansion finished" "done|5000" "$(q -c "SELECT expansion || '|' || enqueued FROM bis.restock_events")"
expect "every subscription has exactly one notification" "5000|5000" \
    "$(q -c "SELECT count(*) || '|' || count(DISTINCT subscription_id) FROM bis.notifications")"
expect "no subscription is left active" 0 "$(q -c "SELECT count(*) FROM bis.subscriptions WHERE status = 'active'")"
expect "every notification is sent" 5000 "$(q -c "SELECT count(*) FROM bis.notifications WHERE status = 'sent'")"

echo "restart: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
