#!/usr/bin/env bash
# bis on Citus, measured: the restock and drain figures of make bench on a
# coordinator and two workers on this machine, beside the same work on a
# single server (a database of the coordinator's server without Citus), in
# the same run.  Run as root on Debian 12 (it installs what it needs), or as
# a user who has installed bis and Citus.  `make bench-citus` runs it.
#
# Figures: C1 the stock transaction of a restock of 1,000 subscribers; C2
# restocks per second (pgbench through the coordinator); C3 restock and drain
# of N subscribers, one and two mailers per worker; C4 a mailer's calls on
# its worker's shards against the same through the coordinator; C5 the size of
# waiting subscriptions.
#
# Environment:
#   BIS_BENCH_N=100000     subscribers drained in C3 (half on each worker)
#   BIS_BENCH_SECONDS=10   length of the pgbench run of C2
#   BIS_BENCH_CLIENTS=8    pgbench clients in C2
#   BIS_BENCH_FSYNC=on     fsync of the three servers
#   BIS_BENCH_OUT=path     where the TSV goes (default /tmp/bis-bench-citus-DATE.tsv)
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bis_citus_prepare "$@"

n=${BIS_BENCH_N:-100000}
seconds=${BIS_BENCH_SECONDS:-10}
clients=${BIS_BENCH_CLIENTS:-8}
fsync=${BIS_BENCH_FSYNC:-on}
out=${BIS_BENCH_OUT:-/tmp/bis-bench-citus-$(date +%Y%m%d-%H%M%S).tsv}
half=$((n / 2))

bis_start_citus "fsync = $fsync" "synchronous_commit = on" "shared_buffers = 256MB" \
    "max_wal_size = 2GB" "checkpoint_timeout = 30min" "jit = off"
coord=${bis_citus_ports[0]} w1=${bis_citus_ports[1]} w2=${bis_citus_ports[2]}
work=$bis_citus_dir
cc -O2 -Wall -I"$(pg_config --includedir)" -o "$work/bench_client" test/bench/bench_client.c \
    -L"$(pg_config --libdir)" -lpq
client() { PGPORT=$1 PGDATABASE=$2 "$work/bench_client" "${@:3}"; }
q() { local p=$1 d=$2; shift 2; psql -X -q -At -v ON_ERROR_STOP=1 -p "$p" -d "$d" "$@"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
tsv() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$out"; }
summary=()
note() { summary+=("$1"); }
git_rev=$(git -c safe.directory='*' -C "$bis_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "bis on Citus: bis $git_rev, $(pg_config --version), Citus 13.2.2, $(nproc) cores, fsync $fsync"

# -- the cluster's database (postgres) and the single server's (single)
q "$coord" postgres -c "CREATE DATABASE single"
for db in postgres single; do
    q "$coord" "$db" >/dev/null <<SQL
CREATE EXTENSION bis;
$([ "$db" = postgres ] && echo "SELECT bis.distribute();")
CREATE TABLE public.inventory (sku text NOT NULL, warehouse text NOT NULL DEFAULT 'w1',
                               on_hand integer NOT NULL, PRIMARY KEY (sku, warehouse));
SELECT bis.track('public.inventory', quantity_column => 'on_hand');
$([ "$db" = postgres ] && echo "SELECT bis.distribute('public.inventory');")
INSERT INTO bis.contacts (contact_id, email)
SELECT 'c' || i, 'c' || i || '@example.com' FROM generate_series(1, $n) i;
SQL
done
# SKUs by worker: the first found on each
on_worker() {
    local i p
    for i in $(seq 1 400); do
        p=$(q "$coord" postgres -c "SELECT p.nodeport FROM pg_dist_shard_placement p
              WHERE p.shardid = get_shard_id_for_distribution_column('bis.subscriptions', '$1-$i')")
        [ "$p" = "$2" ] && { echo "$1-$i"; return; }
    done
}
items() {  # items DB SKU...
    local db=$1
    shift
    q "$coord" "$db" -c "SELECT bis.upsert_items(jsonb_agg(jsonb_build_object('sku', s)))
                           FROM unnest(string_to_array('$*', ' ')) s" >/dev/null
    q "$coord" "$db" -c "INSERT INTO public.inventory (sku, on_hand)
                          SELECT s, 0 FROM unnest(string_to_array('$*', ' ')) s" >/dev/null
}
subscribe() {  # subscribe DB SKU COUNT
    q "$coord" "$1" -c "INSERT INTO bis.subscriptions (contact_id, sku)
                         SELECT 'c' || i, '$2' FROM generate_series(1, $3) i" >/dev/null
}

# a SKU of PREFIX-i whose shard is that of SKU
same_shard() {
    local i
    for i in $(seq 1 2000); do
        [ "$(q "$coord" postgres -c "SELECT get_shard_id_for_distribution_column('bis.subscriptions', '$2-$i')
                                         = get_shard_id_for_distribution_column('bis.subscriptions', '$1')")" = t ] &&
            { echo "$2-$i"; return; }
    done
}
expand_all() {  # finish the expansions left: each restock's last chunk may be empty
    local p
    if [ "$1" = single ]; then
        q "$coord" single -c "SELECT bis.expand(1000)" >/dev/null
    else
        for p in "$w1" "$w2"; do q "$p" postgres -c "SELECT bis.expand(1000)" >/dev/null; done
    fi
}

# -- C1: the stock transaction of a restock of 1,000 subscribers
echo
echo "== C1. Restock of 1000 subscribers: the stock transaction (ms, median of 5), through the coordinator,"
echo "       in a session that has restocked a SKU of the same shard before (its plans are prepared)"
declare -A c1=()
for db in single postgres; do
    lat=()
    for r in 1 2 3 4 5; do
        sku=R1-$r warm=W1-$r
        [ "$db" = postgres ] && sku=$(on_worker "R1$r" "$w1") && warm=$(same_shard "$sku" "W1$r")
        items "$db" "$sku" "$warm"
        subscribe "$db" "$sku" 1000
        q "$coord" "$db" -c "VACUUM ANALYZE" >/dev/null 2>&1 || true
        lat+=("$(client "$coord" "$db" time "UPDATE public.inventory SET on_hand = 5 WHERE sku = '$warm'" \
                 "UPDATE public.inventory SET on_hand = 5 WHERE sku = '$sku'")")
    done
    c1[$db]=$(median "${lat[@]}")
    expand_all "$db"
done
printf '%-24s %10s\n' "single server" "${c1[single]}" "Citus (2 workers)" "${c1[postgres]}"
tsv C1 restock_1000_ms single "${c1[single]}"
tsv C1 restock_1000_ms citus "${c1[postgres]}"
note "C1 restock of 1000, stock transaction ms: single ${c1[single]}, Citus ${c1[postgres]}"

# -- C2: restocks per second, pgbench through the coordinator
echo
echo "== C2. Stock updates per second, $clients clients for $seconds s, 1000 SKUs flipping 0 <-> 5 (every other one a restock)"
declare -A c2=() c2r=()
for db in single postgres; do
    q "$coord" "$db" -c "SELECT bis.upsert_items(jsonb_agg(jsonb_build_object('sku', 'F-' || i)))
                          FROM generate_series(1, 1000) i" \
        -c "INSERT INTO public.inventory (sku, on_hand) SELECT 'F-' || i, 0 FROM generate_series(1, 1000) i" >/dev/null
    cat >"$work/flip.sql" <<'EOF'
\set s random(1, 1000)
UPDATE public.inventory SET on_hand = 5 - on_hand WHERE sku = 'F-' || :s;
EOF
    before=$(q "$coord" "$db" -c "SELECT count(*) FROM bis.restock_events WHERE sku LIKE 'F-%'")
    "$(pg_config --bindir)/pgbench" -n -M prepared -p "$coord" -c "$clients" -j 2 -T "$seconds" \
        -f "$work/flip.sql" "$db" >"$work/pgbench.log" 2>&1 || { cat "$work/pgbench.log"; exit 1; }
    after=$(q "$coord" "$db" -c "SELECT count(*) FROM bis.restock_events WHERE sku LIKE 'F-%'")
    c2[$db]=$(grep -oP '^tps = \K[0-9.]+' "$work/pgbench.log" | awk '{ printf "%.0f", $1 }')
    c2r[$db]=$(awk -v a="$after" -v b="$before" -v s="$seconds" 'BEGIN { printf "%.0f", (a - b) / s }')
done
printf '%-24s %12s %12s\n' "" "updates/s" "restocks/s" "single server" "${c2[single]}" "${c2r[single]}" \
    "Citus (2 workers)" "${c2[postgres]}" "${c2r[postgres]}"
tsv C2 updates_per_s single "${c2[single]}"
tsv C2 updates_per_s citus "${c2[postgres]}"
tsv C2 restocks_per_s single "${c2r[single]}"
tsv C2 restocks_per_s citus "${c2r[postgres]}"
note "C2 stock updates/s (restocks/s): single ${c2[single]} (${c2r[single]}), Citus ${c2[postgres]} (${c2r[postgres]})"

# -- C3: restock and drain, one and two mailers per worker
echo
echo "== C3. Restock + drain of $n subscribers (Citus: $half on each worker), claim 1000 + ack, each its own transaction"
drain_on() {  # drain_on PORT DB WORKER: prints "drain_ms rows"
    client "$1" "$2" drain "SELECT 1" "SELECT * FROM bis.claim('$3', 1000)" "SELECT bis.ack(\$1, '$3')" |
        awk '{ print $2, $3 }'
}
run_drain() {  # run_drain DB MAILERS SKU...: restock the SKUs in one transaction, drain with MAILERS per node
    local db=$1 mailers=$2 t0 t1 m p ports rows=0
    shift 2
    q "$coord" "$db" -c "UPDATE public.inventory SET on_hand = 5 WHERE sku IN ($(printf "'%s'," "$@" | sed 's/,$//'))"
    ports=("$coord")
    [ "$db" = postgres ] && ports=("$w1" "$w2")
    t0=$(date +%s%N)
    for p in "${ports[@]}"; do
        for m in $(seq 1 "$mailers"); do
            drain_on "$p" "$db" "m$p-$m" >"$work/drain.$p.$m" &
        done
    done
    wait
    t1=$(date +%s%N)
    for f in "$work"/drain.*; do rows=$((rows + $(awk '{ print $2 }' "$f"))); done
    rm -f "$work"/drain.*
    awk -v r="$rows" -v t="$(((t1 - t0) / 1000000))" -v nodes="${#ports[@]}" \
        'BEGIN { printf "%d %.2f %.0f %.0f\n", r, t / 1000, r / (t / 1000), r / (t / 1000) / nodes }'
}
size_of() {  # size_of DB TABLE: bytes with indexes, over every node
    if [ "$1" = single ]; then
        q "$coord" single -c "SELECT pg_total_relation_size('$2')"
    else
        q "$coord" postgres -c "SELECT citus_total_relation_size('$2')"
    fi
}
declare -A c3=() c5=()
for mailers in 1 2; do
    for db in single postgres; do
        subs_before=$(size_of "$db" bis.subscriptions)
        if [ "$db" = single ]; then
            skus=("D$mailers")
            items "$db" "${skus[@]}"
            subscribe "$db" "${skus[0]}" "$n"
        else
            skus=("$(on_worker "D$mailers-a" "$w1")" "$(on_worker "D$mailers-b" "$w2")")
            items "$db" "${skus[@]}"
            subscribe "$db" "${skus[0]}" "$half"
            q "$coord" "$db" -c "INSERT INTO bis.subscriptions (contact_id, sku)
                                  SELECT 'c' || i, '${skus[1]}' FROM generate_series($half + 1, $n) i" >/dev/null
        fi
        q "$coord" "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null 2>&1
        [ "$db" = postgres ] && for p in "$w1" "$w2"; do q "$p" "$db" -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null 2>&1; done
        [ "$mailers" = 1 ] &&
            c5[$db]=$(awk -v a="$(size_of "$db" bis.subscriptions)" -v b="$subs_before" -v n="$n" \
                          'BEGIN { printf "%.0f", (a - b) / n * 1000000 / 1048576 }')
        c3[$db$mailers]=$(run_drain "$db" "$mailers" "${skus[@]}")
        expand_all "$db"
    done
done
printf '%-34s %8s %8s %10s %14s\n' "" rows s rows/s "rows/s/node"
for mailers in 1 2; do
    for db in single postgres; do
        read -r rows s rps per <<<"${c3[$db$mailers]}"
        label="single server, $mailers mailer(s)"
        [ "$db" = postgres ] && label="Citus, $mailers mailer(s) per worker"
        printf '%-34s %8s %8s %10s %14s\n' "$label" "$rows" "$s" "$rps" "$per"
        tsv C3 "drain_rows_per_s_${mailers}_mailers" "$([ "$db" = postgres ] && echo citus || echo single)" "$rps"
    done
done
note "C3 restock + drain $n, rows/s with 1 / 2 mailers per node: single $(echo "${c3[single1]}" | cut -d' ' -f3) / $(echo "${c3[single2]}" | cut -d' ' -f3), Citus $(echo "${c3[postgres1]}" | cut -d' ' -f3) / $(echo "${c3[postgres2]}" | cut -d' ' -f3) ($(echo "${c3[postgres1]}" | cut -d' ' -f4) / $(echo "${c3[postgres2]}" | cut -d' ' -f4) per worker)"

echo
echo "== C5. Waiting subscriptions, MB per million (with indexes, before the restock; on Citus the key is (id, sku))"
printf '%-24s %10s\n' "single server" "${c5[single]}" "Citus (2 workers)" "${c5[postgres]}"
tsv C5 subscriptions_mb_per_million single "${c5[single]}"
tsv C5 subscriptions_mb_per_million citus "${c5[postgres]}"
note "C5 waiting subscriptions MB per million: single ${c5[single]}, Citus ${c5[postgres]}"

# -- C4: a mailer's calls on its worker's shards, against the same through the coordinator
echo
echo "== C4. Claim 1000 + ack on the worker's own shards, against the ack as one multi-shard statement of the coordinator (ms, median of 5)"
sku=$(on_worker C4 "$w1")
items postgres "$sku"
subscribe postgres "$sku" 5000
q "$coord" postgres -c "UPDATE public.inventory SET on_hand = 5 WHERE sku = '$sku'" >/dev/null
claims=() local_acks=() coord_acks=() empty=()
for r in 1 2 3 4 5; do
    claims+=("$(client "$w1" postgres time "" "SELECT count(*) FROM bis.claim('c4', 1000)")")
    ids=$(q "$w1" postgres -c "SELECT array_agg(id) FROM bis.notifications WHERE claimed_by = 'c4' AND status = 'claimed'")
    if [ $((r % 2)) = 1 ]; then
        local_acks+=("$(client "$w1" postgres time "" "SELECT bis.ack('$ids', 'c4')")")
    else
        coord_acks+=("$(client "$coord" postgres time "" "UPDATE bis.notifications n SET status = 'sent', sent_at = now(),
                          claimed_until = NULL WHERE n.id = ANY ('$ids') AND n.status = 'claimed' AND n.claimed_by = 'c4'")")
    fi
done
for r in 1 2 3 4 5; do
    empty+=("$(client "$w1" postgres time "" "SELECT count(*) FROM bis.claim('c4', 1000)")")
done
single_empty=()
for r in 1 2 3 4 5; do
    single_empty+=("$(client "$coord" single time "" "SELECT count(*) FROM bis.claim('c4', 1000)")")
done
printf '%-58s %8s\n' "claim 1000 on the worker (16 shard groups)" "$(median "${claims[@]}")" \
    "ack 1000 on the worker, shard group by shard group" "$(median "${local_acks[@]}")" \
    "the same update from the coordinator, one multi-shard statement" "$(median "${coord_acks[@]}")" \
    "claim with nothing due, on the worker" "$(median "${empty[@]}")" \
    "claim with nothing due, single server" "$(median "${single_empty[@]}")"
tsv C4 claim_1000_worker_ms citus "$(median "${claims[@]}")"
tsv C4 ack_1000_worker_ms citus "$(median "${local_acks[@]}")"
tsv C4 ack_1000_coordinator_ms citus "$(median "${coord_acks[@]}")"
tsv C4 empty_claim_ms citus "$(median "${empty[@]}")"
tsv C4 empty_claim_ms single "$(median "${single_empty[@]}")"
note "C4 ms: claim 1000 on a worker $(median "${claims[@]}"), ack 1000 there $(median "${local_acks[@]}"), the ack from the coordinator $(median "${coord_acks[@]}"); empty claim worker $(median "${empty[@]}"), single $(median "${single_empty[@]}")"

echo
echo "== Summary"
printf '%s\n' "${summary[@]}"
echo "TSV: $out"
