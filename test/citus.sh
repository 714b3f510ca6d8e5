#!/usr/bin/env bash
# bis on Citus: builds Citus 13.2.2 from ../shared/citus (or BIS_CITUS_SRC),
# starts a coordinator and two workers on loopback, distributes bis and a
# tracked shop table, and checks restocks on both workers, a cross-worker
# transaction, concurrent restocks of one SKU, claims by two mailers, waves,
# the threshold cache and settings on every node, NOTIFY per node, and a
# worker killed in the middle of an expansion: every subscription notified
# exactly once.
#
# Run as root on a fresh Debian 12 machine (it installs what it needs, builds
# and installs Citus and bis into pg_config's directories), or as a user who
# has installed both.  BIS_CITUS_PORT (default 5525) is the coordinator's
# port; the workers listen on the next two.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bis_citus_prepare "$@"

# -- a coordinator and two workers on loopback
bis_start_citus
coord=${bis_citus_ports[0]} w1=${bis_citus_ports[1]} w2=${bis_citus_ports[2]}
dir=$bis_citus_dir
bindir=$(pg_config --bindir)
start_node() { bis_citus_start_node "$1"; }

q() { psql -X -q -At -v ON_ERROR_STOP=1 -p "$coord" "$@"; }
on() { local p=$1; shift; psql -X -q -At -v ON_ERROR_STOP=1 -p "$p" "$@"; }

# -- distribute bis and a shop table it tracks
q >/dev/null <<'SQL'
CREATE EXTENSION bis;
SELECT bis.distribute();
CREATE TABLE public.inventory (sku text NOT NULL, warehouse text NOT NULL, on_hand integer NOT NULL,
                               PRIMARY KEY (sku, warehouse));
SELECT bis.track('public.inventory', quantity_column => 'on_hand');
SELECT bis.distribute('public.inventory');
SQL
expect "bis.distribute() again changes nothing" "|" \
    "$(q -c "SELECT bis.distribute()" -c "SELECT bis.distribute('public.inventory')" | paste -sd'|')"
expect "keyed by SKU: one co-location group, by sku" "1|7" \
    "$(q -c "SELECT count(DISTINCT colocationid) || '|' || count(*) FROM pg_dist_partition
              WHERE partmethod = 'h' AND column_to_column_name(logicalrelid, partkey) = 'sku'
                AND logicalrelid IN ('bis.stock_levels'::regclass, 'bis.subscriptions'::regclass,
                                     'bis.restock_events'::regclass, 'bis.notifications'::regclass,
                                     'bis.restock_turns'::regclass, 'bis.purchases'::regclass,
                                     'public.inventory'::regclass)")"
expect "the catalog is made of reference tables" 8 \
    "$(q -c "SELECT count(*) FROM pg_dist_partition WHERE partmethod = 'n'
              AND logicalrelid IN ('bis.items'::regclass, 'bis.contacts'::regclass, 'bis.consents'::regclass,
                                   'bis.templates'::regclass, 'bis.signing_key'::regclass,
                                   'bis.push_tokens'::regclass, 'bis.webpush_subscriptions'::regclass,
                                   'bis.delivery_events'::regclass)")"
expect "the foreign keys into the catalog are back" 5 \
    "$(q -c "SELECT count(*) FROM bis._catalog_foreign_keys() f
              JOIN pg_constraint c ON c.conrelid = f.tbl AND c.conname = f.conname")"
expect "an untracked table is refused" "55000" \
    "$(q -c "CREATE TABLE public.other (sku text)" -c "\set ON_ERROR_STOP 0" \
         -c "\set VERBOSITY sqlstate" -c "SELECT bis.distribute('public.other')" 2>&1 | tail -1 | sed 's/.*ERROR: *//')"
fake=public.shop_$(q -c "SELECT get_shard_id_for_distribution_column('public.inventory', 'S-1')")
expect "a tracked table left on the coordinator: the shop's UPDATE succeeds, its restock skipped with a WARNING naming it" \
    "WARNING:  restock of SKU \"S-1\" in table $fake not recorded|1" \
    "$(q -c "CREATE TABLE $fake (sku text, on_hand int)" -c "SELECT bis.track('$fake', quantity_column => 'on_hand')" \
         -c "INSERT INTO $fake VALUES ('S-1', 0)" -c "UPDATE $fake SET on_hand = 7" \
         -c "SELECT count(*) FROM $fake WHERE on_hand = 7" 2>&1 | grep -v '^$\|^DETAIL\|^HINT' | paste -sd'|')"
expect "a distributed table tracked again: its shards' two triggers replaced" "|64" \
    "$(q -c "SELECT bis.track('public.inventory', quantity_column => 'on_hand')" \
         -c "SELECT sum(result::int) FROM run_command_on_shards('public.inventory',
               \$\$SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgname LIKE 'bis_stock%%'\$\$)" 2>&1 |
       paste -sd'|')"
expect "bis.distribute() refuses a worker" "55000" \
    "$(on "$w1" -c "\set VERBOSITY sqlstate" -c "SELECT bis.distribute()" 2>&1 | sed 's/.*ERROR: *//')"

# two SKUs on each worker, found from Citus's placement of their shards
node_of() {
    q -c "SELECT p.nodeport FROM pg_dist_shard_placement p
           WHERE p.shardid = get_shard_id_for_distribution_column('bis.subscriptions', '$1')"
}
declare -A on_node=()
for i in $(seq 1 200); do
    n=$(node_of "S-$i")
    [ -z "${on_node[$n]:-}" ] && on_node[$n]="S-$i" || on_node[$n]="${on_node[$n]} S-$i"
done
read -r a1 a2 _ <<<"${on_node[$w1]}"
read -r b1 b2 _ <<<"${on_node[$w2]}"
echo "SKUs on worker $w1: $a1 $a2; on worker $w2: $b1 $b2"

# 40 contacts, each subscribed to the four SKUs
q >/dev/null <<SQL
SELECT bis.upsert_items(jsonb_agg(jsonb_build_object('sku', s, 'title', 'Item ' || s)))
  FROM unnest(ARRAY['$a1', '$a2', '$b1', '$b2']) s;
SELECT count(bis.upsert_contact('c' || i, email => 'c' || i || '@example.com')) FROM generate_series(1, 40) i;
SELECT count(bis.subscribe('c' || i, s)) FROM generate_series(1, 40) i, unnest(ARRAY['$a1', '$a2', '$b1', '$b2']) s;
INSERT INTO public.inventory SELECT s, 'w1', 0 FROM unnest(ARRAY['$a1', '$a2', '$b1', '$b2']) s;
SQL

# -- restocks on both workers, and the item row never locked on the way
q -c "UPDATE public.inventory SET on_hand = 5 WHERE sku = '$a1'" >/dev/null
psql -X -q -p "$coord" -c "BEGIN" -c "UPDATE public.inventory SET on_hand = 5 WHERE sku = '$b1'" \
    -c "SELECT pg_sleep(3)" -c "COMMIT" >/dev/null &
holder=$!
sleep 1
expect "a restock in flight does not lock its item (catalog updated meanwhile)" 1 \
    "$(q -c "SET statement_timeout = '1500ms'" -c "SELECT bis.upsert_items('[{\"sku\": \"$b1\", \"price\": 10}]')")"
wait "$holder"
expect "restocks on both workers, each named after the shop's table" \
    "$a1|public.inventory|40|40 $b1|public.inventory|40|40" \
    "$(q -c "SELECT string_agg(sku || '|' || source_table || '|' || matched || '|' || enqueued, ' ' ORDER BY sku = '$b1', sku)
              FROM bis.restock_events")"
expect "ids come from each worker's own range" "$w1:1 $w2:2" \
    "$(q -c "SELECT string_agg(DISTINCT (SELECT p.nodeport FROM pg_dist_shard_placement p
                  WHERE p.shardid = get_shard_id_for_distribution_column('bis.notifications', n.sku)) || ':' || (n.id >> 48), ' ')
              FROM bis.notifications n")"

# -- a transaction across both workers: all of it, or none of it
q -c "BEGIN" -c "UPDATE public.inventory SET on_hand = 2 WHERE sku = '$a2'" \
  -c "UPDATE public.inventory SET on_hand = 2 WHERE sku = '$b2'" -c "ROLLBACK" >/dev/null
expect "a cross-worker restock rolled back leaves nothing" "2|80" \
    "$(q -c "SELECT (SELECT count(*) FROM bis.restock_events) || '|' || (SELECT count(*) FROM bis.notifications)")"
q -c "BEGIN" -c "UPDATE public.inventory SET on_hand = 2 WHERE sku = '$a2'" \
  -c "UPDATE public.inventory SET on_hand = 2 WHERE sku = '$b2'" -c "COMMIT" >/dev/null
expect "a cross-worker restock committed (two-phase) notifies both" "4|160|0" \
    "$(q -c "SELECT (SELECT count(*) FROM bis.restock_events) || '|' || (SELECT count(*) FROM bis.notifications)
                    || '|' || (SELECT count(*) FROM bis.subscriptions)")"
expect "bis.set_stock restocks on the SKU's worker and counts what it enqueued" 1 \
    "$(q -c "SELECT bis.subscribe('c1', '$a1') > 0" -c "SELECT bis.set_stock('$a1', 0)" \
         -c "SELECT bis.set_stock('$a1', 3)" | tail -1)"

# -- two mailers on each worker drain their node's shards; none waits for another
# drain PORT WORKER [BATCH]: claim and acknowledge until nothing is left, as a
# mailer does: a claim, then an acknowledgement, each a transaction of its own
drain() {
    on "$1" -c "DO \$\$
        DECLARE ids bigint[];
        BEGIN
          LOOP
            ids := ARRAY(SELECT id FROM bis.claim('$2', ${3:-7}));
            COMMIT;
            EXIT WHEN cardinality(ids) = 0;
            PERFORM bis.ack(ids, '$2');
            COMMIT;
          END LOOP;
        END \$\$"
}
drain "$w1" m1 & drain "$w1" m2 & drain "$w2" m3 & drain "$w2" m4 &
wait
expect "the coordinator refuses a mailer (55000)" "55000" \
    "$(q -c "\set ON_ERROR_STOP 0" -c "\set VERBOSITY sqlstate" -c "SELECT * FROM bis.claim('m0')" 2>&1 | sed 's/.*ERROR: *//')"
expect "every notification sent once, by a mailer of its own worker" "161|161|1|true" \
    "$(q -c "SELECT count(*) || '|' || count(*) FILTER (WHERE status = 'sent') || '|' || max(attempts) || '|'
                    || bool_and(claimed_by = ANY (CASE WHEN sku IN ('$a1', '$a2') THEN ARRAY['m1', 'm2']
                                                       ELSE ARRAY['m3', 'm4'] END))
              FROM bis.notifications")"

# -- after the send: push addresses on the worker, what providers and the shop
# report on the coordinator, the answers, and a person erased
sqlstate() { q -c "\set ON_ERROR_STOP 0" -c "\set VERBOSITY sqlstate" "$@" 2>&1 | sed 's/.*ERROR: *//'; }
q >/dev/null <<SQL
SELECT bis.upsert_contact('p1', email => 'p1@example.com');
SELECT bis.add_push_token('p1', 'fcm', 'tok-p1');
SELECT bis.subscribe('p1', '$b1', channel => 'push');
UPDATE public.inventory SET on_hand = 0 WHERE sku = '$b1';
UPDATE public.inventory SET on_hand = 5 WHERE sku = '$b1';
SQL
pid=$(on "$w2" -c "SELECT id FROM bis.claim('mp', 10, channels => ARRAY['push'])")
expect "a push message claimed on its worker, with the contact's device token" "fcm|tok-p1|1" \
    "$(on "$w2" -c "SELECT platform || '|' || token FROM bis.push_targets(ARRAY[$pid]::bigint[], 'mp')" \
                -c "SELECT bis.ack(ARRAY[$pid]::bigint[], 'mp')" | paste -sd'|')"
expect "a provider's event recorded once, a purchase, an order line of a coordinator's table" "t|f|t|1" \
    "$(q -c "SELECT bis.record_event($pid, 'delivered', provider_event_id => 'pe-1')" \
         -c "SELECT bis.record_event($pid, 'delivered', provider_event_id => 'pe-1')" \
         -c "SELECT bis.record_purchase('p1', '$b1', 'o-1', 1, 10, 'EUR')" \
         -c "CREATE TABLE public.order_lines (order_id text, sku text, contact_id text)" \
         -c "SELECT bis.track_orders('public.order_lines')" \
         -c "INSERT INTO public.order_lines VALUES ('o-2', '$b1', 'p1')" \
         -c "SELECT count(*) FROM bis.purchases WHERE order_id = 'o-2'" | grep -v '^$' | paste -sd'|')"
expect "the answers: the contact's notification, why, and the funnel" "sent|true|true|notified|1|1" \
    "$(q -c "SELECT status || '|' || (delivered_at IS NOT NULL) || '|' || (converted_at IS NOT NULL)
              FROM bis.contact_notifications('p1')" \
         -c "SELECT outcome FROM bis.explain('p1', '$b1')" \
         -c "SELECT sum(delivered) || '|' || sum(converted) FROM bis.funnel WHERE sku = '$b1'" | paste -sd'|')"
expect "price-drop subscriptions, a tracked price column and a distributed order table are refused (0A000)" \
    "0A000|0A000|0A000" \
    "$(sqlstate -c "SELECT bis.subscribe('p1', '$b1', kind => 'price_drop', target_price => 1)")|$(sqlstate \
        -c "SELECT bis.track('public.inventory', quantity_column => 'on_hand', price_column => 'on_hand')")|$(sqlstate \
        -c "CREATE TABLE public.orders_d (order_id text, sku text, contact_id text)" \
        -c "SELECT create_distributed_table('public.orders_d', 'sku', colocate_with => 'bis.stock_levels')" \
        -c "SELECT bis.track_orders('public.orders_d')" | tail -1)"
expect "a person erased on every node: the notification, its event and the purchases anonymized" \
    "{\"purchases\": 2, \"notifications\": 1, \"delivery_events\": 1}|0|0|1" \
    "$(q -c "SELECT bis.erase_contact('p1')" \
         -c "SELECT count(*) FROM bis.contacts WHERE contact_id = 'p1'" \
         -c "SELECT count(*) FROM bis.push_tokens WHERE contact_id = 'p1'" \
         -c "SELECT count(*) FROM bis.notifications WHERE id = $pid AND contact_id LIKE 'erased:%'" | paste -sd'|')"
expect "bis.purge runs on the distributed tables" "0|0|0" \
    "$(q -c "SELECT notifications || '|' || subscriptions || '|' || restock_events FROM bis.purge('100 years')")"

# -- the threshold cache and settings, on every node
q >/dev/null -c "UPDATE public.inventory SET on_hand = 0" -c "SELECT count(bis.subscribe('c' || i, '$a1')) FROM generate_series(1, 5) i"
expect "an item's new threshold reaches the worker's cached thresholds" "0" \
    "$(q -c "UPDATE public.inventory SET on_hand = 1 WHERE sku = '$a2'" \
         -c "SELECT bis.upsert_items('[{\"sku\": \"$a1\", \"threshold\": 5}]')" \
         -c "UPDATE public.inventory SET on_hand = 3 WHERE sku = '$a1'" \
         -c "SELECT count(*) FROM bis.restock_events WHERE sku = '$a1' AND new_quantity = 3
               AND source_table = 'public.inventory'" | tail -1)"
q >/dev/null -c "ALTER DATABASE postgres SET bis.default_threshold = 4" \
  -c "UPDATE public.inventory SET on_hand = 0" -c "SELECT bis.upsert_items('[{\"sku\": \"$a1\", \"threshold\": null}]')"
before=$(q -c "SELECT coalesce(max(id), 0) FROM bis.restock_events WHERE sku = '$b2'")
expect "a setting of the database reaches the workers' sessions (threshold 4: 0 -> 3 is none, 3 -> 4 one)" "4|3|4" \
    "$(q -c "UPDATE public.inventory SET on_hand = 3 WHERE sku = '$b2'" \
         -c "UPDATE public.inventory SET on_hand = 4 WHERE sku = '$b2'" \
         -c "SELECT string_agg(threshold || '|' || old_quantity || '|' || new_quantity, ' ') FROM bis.restock_events
              WHERE sku = '$b2' AND id > $before")"
q >/dev/null -c "ALTER DATABASE postgres RESET bis.default_threshold"

# -- NOTIFY: a hint on the node that restocked, none from a two-phase commit
listen() { on "$1" -c "LISTEN bis_notifications" -c "SELECT pg_sleep(3)" 2>&1 | grep -c "Asynchronous notification" || true; }
q >/dev/null -c "UPDATE public.inventory SET on_hand = 0" \
  -c "SELECT count(bis.subscribe('c' || i, s)) FROM generate_series(1, 3) i, unnest(ARRAY['$a2', '$b2']) s"
listen "$w1" >"$dir/l1" & listen "$w2" >"$dir/l2" &
sleep 1
q >/dev/null -c "UPDATE public.inventory SET on_hand = 5 WHERE sku = '$a2'"
wait
expect "a restock wakes the mailers of its worker only" "1|0" "$(cat "$dir/l1")|$(cat "$dir/l2")"
listen "$w1" >"$dir/l1" & listen "$w2" >"$dir/l2" &
sleep 1
q >/dev/null -c "BEGIN" -c "UPDATE public.inventory SET on_hand = 0 WHERE sku = '$a2'" \
  -c "UPDATE public.inventory SET on_hand = 5 WHERE sku = '$b2'" -c "COMMIT"
wait
expect "a two-phase commit sends no NOTIFY (the mailers' timer finds its rows)" "0|0" "$(cat "$dir/l1")|$(cat "$dir/l2")"
drain "$w1" m1; drain "$w2" m3

# -- concurrent restocks of one SKU on several workers' stock, with subscribes
cat >"$dir/flap.sql" <<EOF
\set w random(1, 3)
\set qty random(0, 3)
UPDATE public.inventory SET on_hand = :qty WHERE sku = '$a2' AND warehouse = 'w' || :w;
EOF
cat >"$dir/cross.sql" <<EOF
\set qty random(0, 2)
BEGIN;
UPDATE public.inventory SET on_hand = :qty WHERE sku = '$a2' AND warehouse = 'w1';
UPDATE public.inventory SET on_hand = :qty WHERE sku = '$b2' AND warehouse = 'w1';
COMMIT;
EOF
cat >"$dir/subscribe.sql" <<EOF
\set c random(1, 40)
\set s random(1, 2)
SELECT bis.subscribe('c' || :c, (ARRAY['$a2', '$b2'])[:s]) AS sid \gset
INSERT INTO public.made VALUES ((ARRAY['$a2', '$b2'])[:s], :sid) ON CONFLICT DO NOTHING;
EOF
q >/dev/null <<SQL
CREATE TABLE public.made (sku text, id bigint, PRIMARY KEY (sku, id));
SELECT create_distributed_table('public.made', 'sku', colocate_with => 'bis.stock_levels');
INSERT INTO public.inventory SELECT s, w, 0 FROM unnest(ARRAY['$a2', '$b2']) s, unnest(ARRAY['w2', 'w3']) w;
UPDATE public.inventory SET on_hand = 0;
SQL
status=0
"$bindir/pgbench" -n -p "$coord" -c 6 -j 2 -T 10 -f "$dir/flap.sql@4" -f "$dir/cross.sql@1" \
    -f "$dir/subscribe.sql@3" postgres >"$dir/pgbench.log" 2>&1 || status=$?
grep -q "aborted\|ERROR" "$dir/pgbench.log" && cat "$dir/pgbench.log"
expect "pgbench: no client failed (no deadlock, no serialization failure)" "0|0" \
    "$status|$(grep -c "aborted\|ERROR" "$dir/pgbench.log" || true)"
echo "pgbench: $(grep "number of transactions actually processed" "$dir/pgbench.log")"
q >/dev/null -c "UPDATE public.inventory SET on_hand = 0" -c "UPDATE public.inventory SET on_hand = 9"
drain "$w1" m1 & drain "$w1" m2 & drain "$w2" m3 & drain "$w2" m4 &
wait
expect "every subscription made under load was notified exactly once" "0|0" \
    "$(q -c "SELECT count(*) FILTER (WHERE c <> 1) || '|' || (SELECT count(*) FROM bis.subscriptions)
              FROM (SELECT m.id, count(n.id) AS c FROM public.made m
                      LEFT JOIN bis.notifications n ON n.sku = m.sku AND n.subscription_id = m.id
                     GROUP BY m.id) x")"
expect "no subscription was notified twice, every notification sent once" "0|1" \
    "$(q -c "SELECT count(*) - count(DISTINCT subscription_id) || '|' || max(attempts) FROM bis.notifications")"

# -- waves, read from the shop's table on the worker
q >/dev/null <<SQL
SELECT bis.upsert_items('[{"sku": "$b1", "wave_per_unit": 2, "wave_interval": "1 second"}]');
UPDATE public.inventory SET on_hand = 0;
SELECT count(bis.subscribe('c' || i, '$b1')) FROM generate_series(1, 20) i;
UPDATE public.inventory SET on_hand = 3 WHERE sku = '$b1' AND warehouse = 'w1';
SQL
drain "$w2" m3; sleep 1.2; drain "$w2" m3
expect "waves: two of 2 x 3, each after reading the stock on its worker" "12|waiting|2" \
    "$(q -c "SELECT enqueued || '|' || expansion || '|' || wave FROM bis.restock_events
              WHERE sku = '$b1' ORDER BY occurred_at DESC, id DESC LIMIT 1")"
q >/dev/null -c "UPDATE public.inventory SET on_hand = 0 WHERE sku = '$b1'"
sleep 1.2; drain "$w2" m3
expect "sold out, the next wave stops and says why" "stopped|{\"wave\": 8}" \
    "$(q -c "SELECT expansion || '|' || held_back FROM bis.restock_events
              WHERE sku = '$b1' ORDER BY occurred_at DESC, id DESC LIMIT 1")"

# -- a worker killed in the middle of an expansion
q >/dev/null <<SQL
ALTER DATABASE postgres SET bis.expand_chunk = 200;
INSERT INTO bis.contacts (contact_id, email) SELECT 'k' || i, 'k' || i || '@example.com' FROM generate_series(1, 3000) i;
SQL
q >/dev/null -c "INSERT INTO bis.subscriptions (contact_id, sku) SELECT 'k' || i, '$a1' FROM generate_series(1, 3000) i" \
    -c "UPDATE public.inventory SET on_hand = 0" -c "UPDATE public.inventory SET on_hand = 9 WHERE sku = '$a1'"
expect "the stock transaction enqueued one chunk" "200|expanding" \
    "$(q -c "SELECT enqueued || '|' || expansion FROM bis.restock_events WHERE sku = '$a1'
              ORDER BY occurred_at DESC, id DESC LIMIT 1")"
# two mailers expanding it, three at a time: each claim a transaction of its own
drain "$w1" m1 3 >/dev/null 2>&1 & drain "$w1" m2 3 >/dev/null 2>&1 &
sleep 1
"$bindir/pg_ctl" -D "$dir/$w1" -m immediate -w -s stop
wait || true
start_node "$w1"
mid=$(q -c "SELECT enqueued FROM bis.restock_events WHERE sku = '$a1' ORDER BY occurred_at DESC, id DESC LIMIT 1")
echo "killed the worker with $mid of 3000 enqueued"
expect "killed mid-expansion" 1 "$([ "$mid" -gt 200 ] && [ "$mid" -lt 3000 ] && echo 1 || echo "$mid")"
# the killed mailers' leases never run out by themselves here: give their rows back
on "$w1" >/dev/null -c "SELECT bis.release(ids) FROM (SELECT array_agg(id) AS ids FROM bis.notifications
                                                     WHERE status = 'claimed') c WHERE ids IS NOT NULL"
drain "$w1" m1 & drain "$w1" m2 &
wait
expect "after the kill, every subscription notified exactly once" "done|3000|3000|3000|0" \
    "$(q -c "SELECT e.expansion || '|' || e.enqueued || '|' || count(n.id) || '|' || count(DISTINCT n.subscription_id)
                    || '|' || (SELECT count(*) FROM bis.subscriptions WHERE sku = '$a1')
              FROM bis.restock_events e JOIN bis.notifications n ON n.restock_event_id = e.id AND n.sku = e.sku
             WHERE e.sku = '$a1' AND e.id = (SELECT max(id) FROM bis.restock_events WHERE sku = '$a1')
             GROUP BY e.expansion, e.enqueued")"
expect "and every one of them sent" 0 \
    "$(q -c "SELECT count(*) FROM bis.notifications WHERE status <> 'sent'")"

echo "citus: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
