#!/usr/bin/env bash
# A restock's statements are planned once a session, not at every restock:
# 50 restocks through a tracked table (of 500 SKUs with three subscribers
# each), in one session with log_planner_stats on, count the planner's runs
# under the 50 UPDATEs.  Left to the plan cache, the statement that writes a
# restock's first chunk was planned anew at every restock once
# bis.subscriptions held these 1,500 (its generic plan looked dearer than the
# custom ones): 210 us of planning for 90 us of work.
#
# Runs against an existing server (PGHOST, PGPORT, PGUSER from the
# environment) in a database of its own, dropped at the end.
set -euo pipefail

db=bis_plans
admin_db=${PGDATABASE:-postgres}
restocks=50
skus=500
trap 'psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true' EXIT

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d "$admin_db" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
q <<SQL
CREATE EXTENSION bis;
CREATE TABLE shelf (sku text PRIMARY KEY, quantity int NOT NULL);
SELECT bis.track('shelf') \g /dev/null
SELECT bis.upsert_items(jsonb_agg(jsonb_build_object('sku', 'N' || i, 'title', 'Item ' || i)))
  FROM generate_series(1, $skus) i \g /dev/null
SELECT bis.upsert_contact('c' || c, email => 'c' || c || '@example.com')
  FROM generate_series(1, 3) c \g /dev/null
INSERT INTO shelf SELECT 'N' || i, 0 FROM generate_series(1, $skus) i;
SELECT bis.subscribe('c' || c, 'N' || i) FROM generate_series(1, $skus) i, generate_series(1, 3) c \g /dev/null
VACUUM ANALYZE;
SQL

# each UPDATE is planned once itself; terse: one line a planner run
runs=$({
    echo "SET log_planner_stats = on;"
    echo "SET client_min_messages = log;"
    echo "\\set VERBOSITY terse"
    for ((i = 1; i <= restocks; i++)); do
        echo "UPDATE shelf SET quantity = 5 WHERE sku = 'N$i';"
    done
} | q 2>&1 >/dev/null | grep -c 'PLANNER STATISTICS' || true)
enqueued=$(q -At -c "SELECT count(*) FROM bis.notifications")
nested=$((runs - restocks))
echo "$restocks restocks, $enqueued notifications: the planner ran $nested times under them"
if [ "$enqueued" -ne $((restocks * 3)) ]; then
    echo "not ok: $((restocks * 3)) notifications expected"
    exit 1
fi
# a statement prepared once may still be planned once for its values, and
# after an invalidation (autovacuum's ANALYZE) once more: far below one a restock
if [ "$nested" -ge $((restocks / 2)) ]; then
    echo "not ok: a restock's statements are planned again at each restock"
    exit 1
fi
echo "ok   a restock's statements are planned once a session"
