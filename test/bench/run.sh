#!/usr/bin/env bash
# The benchmark suite: bis against the hand-written PL/pgSQL peer
# (test/bench/peer.sql, a copy of the reference peer), side by side in the
# same run, on a throwaway cluster.  Run as root on Debian 12 (it installs
# what it needs, builds and installs bis, then goes on as postgres), or as a
# user who has built and installed bis.  `make bench` runs it.
#
# Figures: 1 bulk non-crossing UPDATE overhead; 2 single-row non-crossing
# overhead (pgbench); 3 restock latency by number of subscribers; 4 restock
# and drain throughput; 5 NOTIFY-to-listener latency; 6 sizes per million
# notified; 7 NOTIFY
# contention (pgbench, bis.notify on/off); 8 sustained restock and drain with
# housekeeping, then with a long transaction open; 9 claims with every
# delivery rule on against none.
#
# Environment:
#   BIS_BENCH_FULL=1      add the 1M-subscriber restock and drain 200k (long)
#   BIS_BENCH_SCALE=0.1   multiply every data size (for development)
#   BIS_BENCH_RUNS=9      runs per table in figure 1 (a shared machine is noisy)
#   BIS_BENCH_ROUNDS=3    pgbench rounds per variant in figures 2 and 7
#   BIS_BENCH_SECONDS=10  length of one pgbench run
#   BIS_BENCH_REPS=3      repetitions of each restock in figure 3 (1M: once)
#   BIS_BENCH_NOTIFY_N=200  restocks per implementation in figure 5
#   BIS_BENCH_CYCLES=40   cycles of figure 8 with autovacuum alone (held and after: a third each)
#   BIS_BENCH_ONLY="1 3"  run only these figures (6 needs 3 and 4)
#   BIS_BENCH_FSYNC=on    fsync of the benchmark cluster (lib.sh starts it off)
#   BIS_BENCH_OUT=path    where the TSV goes (default /tmp/bis-bench-DATE.tsv)
#   BIS_BENCH_PEER_SQL=path  the peer to load (default test/bench/peer.sql)
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bis_become_unprivileged "$@"
cd "$bis_root"

full=${BIS_BENCH_FULL:-0}
scale=${BIS_BENCH_SCALE:-1}
runs=${BIS_BENCH_RUNS:-9}
rounds=${BIS_BENCH_ROUNDS:-3}
seconds=${BIS_BENCH_SECONDS:-10}
reps=${BIS_BENCH_REPS:-3}
notify_n=${BIS_BENCH_NOTIFY_N:-200}
cycles=${BIS_BENCH_CYCLES:-40}
only=${BIS_BENCH_ONLY:-1 2 3 4 5 6 7 8 9}
fsync=${BIS_BENCH_FSYNC:-on}
stamp=$(date +%Y%m%d-%H%M%S)
out=${BIS_BENCH_OUT:-/tmp/bis-bench-$stamp.tsv}
started=$SECONDS

work=$(mktemp -d /tmp/bis-bench.XXXXXX)
listener_pid=
bench_cleanup() {
    [ -n "$listener_pid" ] && kill "$listener_pid" 2>/dev/null
    rm -rf "$work"
}

bis_start_cluster
trap 'bench_cleanup; pg_ctl_stop' EXIT

# --- the server: settings for benchmarking, then a restart for shared_buffers
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
ALTER SYSTEM SET shared_buffers = '1GB';
ALTER SYSTEM SET max_wal_size = '4GB';
ALTER SYSTEM SET checkpoint_timeout = '30min';
ALTER SYSTEM SET synchronous_commit = on;
ALTER SYSTEM SET work_mem = '64MB';
ALTER SYSTEM SET maintenance_work_mem = '256MB';
ALTER SYSTEM SET jit = off;
SQL
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "ALTER SYSTEM SET fsync = $fsync"
# lib.sh starts the cluster with fsync=off on its command line, which wins over
# ALTER SYSTEM; pg_ctl restart takes the command line from postmaster.opts
sed -i "s/\"fsync=off\"/\"fsync=$fsync\"/" "$bis_dir/data/postmaster.opts"
"$(pg_config --bindir)/pg_ctl" -D "$bis_dir/data" -l "$bis_dir/server.log" -w -s -m fast restart

cc -O2 -Wall -I"$(pg_config --includedir)" -o "$work/bench_client" test/bench/bench_client.c \
    -L"$(pg_config --libdir)" -lpq
client() { "$work/bench_client" "$@"; }

export PGDATABASE=bench
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
val() { psql -X -qAt -v ON_ERROR_STOP=1 -c "$1"; }
q -c "CREATE EXTENSION bis" -c "CREATE SCHEMA bench"
q -f "${BIS_BENCH_PEER_SQL:-test/bench/peer.sql}"

# --- helpers
want() { [[ " $only " == *" $1 "* ]]; }
scaled() { awk -v n="$1" -v s="$scale" 'BEGIN { v = int(n * s); print (v < 1 ? 1 : v) }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
# overhead of time b over time a, in %
ovh() { calc '%+.1f%%' "($2 / $1 - 1) * 100"; }
tsv() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$out"; }
summary=()
note() { summary+=("$1"); }
maint() {  # VACUUM (ANALYZE) these tables, then a checkpoint: every run starts alike
    q -c "VACUUM ANALYZE $*" -c "CHECKPOINT"
}
pgbench_tps() {  # script, then pgbench options; prints the TPS
    local log=$work/pgbench.log
    if ! pgbench -n -M prepared -j 2 -T "$seconds" -f "$@" >"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
    if grep -q 'number of failed transactions: [1-9]' "$log"; then
        cat "$log" >&2
        return 1
    fi
    grep -oP '^tps = \K[0-9.]+' "$log" | awk '{ printf "%.1f", $1 }'
}
check() {  # description, got, expected
    if [ "$2" != "$3" ]; then
        echo "CHECK FAILED: $1: got $2, expected $3" >&2
        exit 1
    fi
}
figure_time() { printf '(%d s)\n' $((SECONDS - fig_started)); }

git_rev=$(git -C "$bis_root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$bis_root" status --porcelain --untracked-files=no 2>/dev/null)" ] &&
    git_rev="$git_rev (with uncommitted changes)"
printf 'figure\tmeasure\tvariant\tvalue\tunit\n' >"$out"
echo "bis benchmark, bis against the PL/pgSQL peer in the same run"
echo "date:       $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "server:     $(val 'SELECT version()')"
echo "cpu:        $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') ($(nproc) cores)"
echo "bis:        $(val "SELECT extversion FROM pg_extension WHERE extname = 'bis'"), commit $git_rev"
echo "settings:   $(val "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)
                          FROM unnest(ARRAY['shared_buffers', 'max_wal_size', 'checkpoint_timeout',
                                            'synchronous_commit', 'fsync', 'jit', 'work_mem',
                                            'autovacuum']) name")"
echo "run:        scale=$scale full=$full runs=$runs rounds=$rounds seconds=$seconds reps=$reps"
echo "TSV:        $out"
tsv 0 version server "$(val 'SHOW server_version')" ''
tsv 0 commit bis "$git_rev" ''

# --- common data: the inventories (figure 1's 200k rows in stock, untracked,
# tracked by bis, and the peer's), the catalog and the contacts
rows=$(scaled 200000)
sizes=("$(scaled 1000)" "$(scaled 10000)" "$(scaled 100000)")
[ "$full" = 1 ] && sizes+=("$(scaled 1000000)")
drain_n=$(scaled $([ "$full" = 1 ] && echo 200000 || echo 100000))
contacts=$drain_n
sustain_skus=25
sustain_subs=$(scaled 200)
for n in "${sizes[@]}"; do [ "$n" -gt "$contacts" ] && contacts=$n; done
fig_started=$SECONDS
echo
echo "setup: $rows inventory rows per table, $contacts contacts ..."
q <<SQL
CREATE TABLE bench.inventory_plain (sku text PRIMARY KEY, quantity int NOT NULL);
CREATE TABLE bench.inventory (sku text PRIMARY KEY, quantity int NOT NULL);
-- PostgreSQL's floor for any AFTER row trigger: one whose WHEN is never true
CREATE TABLE bench.inventory_floor (sku text PRIMARY KEY, quantity int NOT NULL);
CREATE FUNCTION bench.never() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END';
CREATE TRIGGER floor AFTER UPDATE OF quantity ON bench.inventory_floor FOR EACH ROW
    WHEN (false) EXECUTE FUNCTION bench.never();
-- and one whose WHEN makes bis's own comparisons of OLD and NEW, then is false
-- (a constant false at the end would be folded away): what deciding costs
CREATE TABLE bench.inventory_cmp (sku text PRIMARY KEY, quantity int NOT NULL);
CREATE TRIGGER cmp AFTER UPDATE OF quantity ON bench.inventory_cmp FOR EACH ROW
    WHEN (NEW.quantity >= 1 AND (OLD.quantity IS NULL OR NEW.quantity > OLD.quantity)
          AND NEW.quantity < 0) EXECUTE FUNCTION bench.never();
INSERT INTO bench.inventory_plain SELECT 'S' || i, 5 + i % 20 FROM generate_series(1, $rows) i;
INSERT INTO bench.inventory_floor SELECT 'S' || i, 5 + i % 20 FROM generate_series(1, $rows) i;
INSERT INTO bench.inventory_cmp SELECT 'S' || i, 5 + i % 20 FROM generate_series(1, $rows) i;
INSERT INTO bench.inventory SELECT 'S' || i, 5 + i % 20 FROM generate_series(1, $rows) i;
-- loaded before the triggers fire: these are not restocks
ALTER TABLE peer.inventory DISABLE TRIGGER on_stock;
INSERT INTO peer.inventory SELECT 'S' || i, 5 + i % 20 FROM generate_series(1, $rows) i;
ALTER TABLE peer.inventory ENABLE TRIGGER on_stock;
SELECT bis.track('bench.inventory') \g /dev/null

-- SKUs restocked later, at 0: R<n> (figure 3), D<n> (4), N<i> (5), K<i> (7), WARM
CREATE TABLE bench.skus AS
SELECT 'R' || n AS sku FROM unnest('{$(IFS=,; echo "${sizes[*]}")}'::int[]) n
UNION ALL SELECT 'D' || $drain_n
UNION ALL SELECT 'N' || i FROM generate_series(1, $notify_n) i
UNION ALL SELECT 'K' || i FROM generate_series(0, 31) i
UNION ALL SELECT 'L' || i FROM generate_series(1, $sustain_skus) i
UNION ALL SELECT 'WARM';
INSERT INTO bis.items (sku, title, url, image_url, price, currency, category)
SELECT sku, 'Product ' || sku, 'https://shop.example/p/' || lower(sku),
       'https://shop.example/i/' || lower(sku) || '.jpg', 49.90, 'EUR', 'outdoor'
  FROM bench.skus;
INSERT INTO bench.inventory SELECT sku, 0 FROM bench.skus;
INSERT INTO peer.inventory SELECT sku, 0 FROM bench.skus;
INSERT INTO bis.contacts (contact_id, email, locale, time_zone)
SELECT 'c' || i, 'c' || i || '@example.com', 'en-US', 'Europe/Stockholm'
  FROM generate_series(1, $contacts) i;
SQL
check "restock events during setup" "$(val 'SELECT count(*) FROM bis.restock_events')" 0
maint bench.inventory_plain, bench.inventory_floor, bench.inventory_cmp, bench.inventory, peer.inventory, \
    bis.items, bis.contacts
figure_time

# the first restock of a session prepares bis's plan and compiles the peer's
# function: done before a timed one
warm_bis="UPDATE bench.inventory SET quantity = 5 WHERE sku = 'WARM'; UPDATE bench.inventory SET quantity = 0 WHERE sku = 'WARM'"
warm_peer="UPDATE peer.inventory SET quantity = 5 WHERE sku = 'WARM'; UPDATE peer.inventory SET quantity = 0 WHERE sku = 'WARM'"

reset_queue() {
    q -c "TRUNCATE bis.subscriptions, bis.notifications, bis.restock_events, peer.subscriptions, peer.outbox"
}
subscribe() {  # sku, number of subscribers (contacts c1..cN), for bis and the peer
    q -c "INSERT INTO bis.subscriptions (contact_id, sku) SELECT 'c' || i, '$1' FROM generate_series(1, $2) i" \
      -c "INSERT INTO peer.subscriptions (contact_id, sku) SELECT 'c' || i, '$1' FROM generate_series(1, $2) i"
}
sizes_of() {  # variant label, tables: table bytes and index bytes summed
    val "SELECT sum(pg_total_relation_size(t) - pg_indexes_size(t)) || ' ' || sum(pg_indexes_size(t))
           FROM unnest('{$(IFS=,; echo "$*")}'::regclass[]) t"
}

# --- 1. non-crossing overhead, bulk
if want 1; then
    fig_started=$SECONDS
    echo
    echo "== 1. Non-crossing overhead, bulk: UPDATE of the $rows rows in stock (median of $runs runs, ms)"
    declare -A tables=([untracked]=bench.inventory_plain [floor]=bench.inventory_floor
                       [cmp]=bench.inventory_cmp [bis]=bench.inventory [peer]=peer.inventory)
    declare -A times=()
    variants=(untracked floor cmp bis peer)
    bulk() {  # variant, op; prints ms
        local t=${tables[$1]}
        maint "$t"
        # only the rows in stock (S<i>): the restock SKUs, at 0 in the same
        # tables, would cross on +1 and make it a figure of restocks
        client time "UPDATE $t SET quantity = quantity + 1 WHERE sku = 'S1'; UPDATE $t SET quantity = quantity - 1 WHERE sku = 'S1'" \
            "UPDATE $t SET quantity = quantity $2 1 WHERE sku LIKE 'S%'"
    }
    # one untimed pass: the first update after loading moves every row to new pages
    for v in "${variants[@]}"; do bulk "$v" + >/dev/null; bulk "$v" - >/dev/null; done
    for ((r = 0; r < runs; r++)); do
        for ((k = 0; k < ${#variants[@]}; k++)); do
            v=${variants[$(((r + k) % ${#variants[@]}))]}
            times[$v+]+=" $(bulk "$v" +)"
            times[$v-]+=" $(bulk "$v" -)"
        done
    done
    check "restocks during figure 1, which crosses nothing" "$(val 'SELECT count(*) FROM bis.restock_events')" 0
    printf '%-26s %10s %10s %10s %10s %10s %9s %9s %9s %9s %9s\n' statement untracked floor cmp bis peer \
        'floor ovh' 'cmp ovh' 'bis ovh' 'peer ovh' bis/peer
    for op in + -; do
        declare -A m=()
        for v in "${variants[@]}"; do
            # shellcheck disable=SC2086
            m[$v]=$(median ${times[$v$op]})
            tsv 1 "bulk quantity $op 1 median" "$v" "${m[$v]}" ms
            # shellcheck disable=SC2086
            tsv 1 "bulk quantity $op 1 runs" "$v" "$(echo ${times[$v$op]})" ms
        done
        for v in floor cmp bis peer; do
            tsv 1 "bulk quantity $op 1 overhead" $v "$(calc '%.2f' "(${m[$v]} / ${m[untracked]} - 1) * 100")" %
        done
        printf '%-26s %10.1f %10.1f %10.1f %10.1f %10.1f %9s %9s %9s %9s %9.2f\n' "quantity = quantity $op 1" \
            "${m[untracked]}" "${m[floor]}" "${m[cmp]}" "${m[bis]}" "${m[peer]}" \
            "$(ovh "${m[untracked]}" "${m[floor]}")" "$(ovh "${m[untracked]}" "${m[cmp]}")" \
            "$(ovh "${m[untracked]}" "${m[bis]}")" "$(ovh "${m[untracked]}" "${m[peer]}")" \
            "$(calc %.4f "${m[bis]} / ${m[peer]}")"
        note "1  bulk quantity $op 1 ($rows rows): untracked $(calc %.1f "${m[untracked]}") ms, floor $(calc %.1f "${m[floor]}") ms ($(ovh "${m[untracked]}" "${m[floor]}")), cmp $(calc %.1f "${m[cmp]}") ms ($(ovh "${m[untracked]}" "${m[cmp]}")), bis $(calc %.1f "${m[bis]}") ms ($(ovh "${m[untracked]}" "${m[bis]}")), peer $(calc %.1f "${m[peer]}") ms ($(ovh "${m[untracked]}" "${m[peer]}")); bis/peer $(calc %.2f "${m[bis]} / ${m[peer]}")"
    done
    echo "(floor: an AFTER UPDATE row trigger whose WHEN is never true, PostgreSQL's own cost of any"
    echo " row trigger, which refetches every old row; cmp: one whose WHEN compares OLD and NEW as bis's"
    echo " does, then is false; bis/peer: time ratio, below 1 means bis is faster)"
    figure_time
fi

# --- 2. non-crossing overhead, single-row
if want 2; then
    fig_started=$SECONDS
    clients=8
    echo
    echo "== 2. Non-crossing overhead, single-row: pgbench, $clients clients, ${seconds} s x $rounds rounds, synchronous_commit=off (median TPS)"
    echo "   each transaction: UPDATE +1 and UPDATE -1 of one random SKU of $rows"
    declare -A tables=([untracked]=bench.inventory_plain [bis]=bench.inventory [peer]=peer.inventory)
    declare -A tps=()
    variants=(untracked bis peer)
    check "synchronous_commit of the pgbench sessions" \
        "$(export PGOPTIONS='-c synchronous_commit=off'; val 'SHOW synchronous_commit')" off
    for v in "${variants[@]}"; do
        cat >"$work/single_$v.sql" <<EOF
\\set k random(1, $rows)
BEGIN;
UPDATE ${tables[$v]} SET quantity = quantity + 1 WHERE sku = 'S' || :k::text;
UPDATE ${tables[$v]} SET quantity = quantity - 1 WHERE sku = 'S' || :k::text;
END;
EOF
    done
    for ((r = 0; r < rounds; r++)); do
        for ((k = 0; k < 3; k++)); do
            v=${variants[$(((r + k) % 3))]}
            maint "${tables[$v]}"
            tps[$v]+=" $(export PGOPTIONS='-c synchronous_commit=off'; pgbench_tps "$work/single_$v.sql" -c $clients)"
        done
    done
    declare -A m=()
    for v in "${variants[@]}"; do
        # shellcheck disable=SC2086
        m[$v]=$(median ${tps[$v]})
        tsv 2 "single-row tps median" "$v" "${m[$v]}" tps
        # shellcheck disable=SC2086
        tsv 2 "single-row tps rounds" "$v" "$(echo ${tps[$v]})" tps
    done
    # overhead: the extra time per transaction, relative to untracked
    tsv 2 "single-row overhead" bis "$(calc '%.2f' "(${m[untracked]} / ${m[bis]} - 1) * 100")" %
    tsv 2 "single-row overhead" peer "$(calc '%.2f' "(${m[untracked]} / ${m[peer]} - 1) * 100")" %
    printf '%10s %10s %10s %9s %9s %9s\n' untracked bis peer 'bis ovh' 'peer ovh' bis/peer
    printf '%10.0f %10.0f %10.0f %9s %9s %9.2f\n' "${m[untracked]}" "${m[bis]}" "${m[peer]}" \
        "$(ovh "${m[bis]}" "${m[untracked]}")" "$(ovh "${m[peer]}" "${m[untracked]}")" \
        "$(calc %.4f "${m[bis]} / ${m[peer]}")"
    echo "(rounds, TPS: untracked${tps[untracked]}; bis${tps[bis]}; peer${tps[peer]})"
    echo "(overhead: extra time per transaction relative to untracked; bis/peer: TPS ratio, above 1 means bis is faster)"
    note "2  single-row pgbench: untracked $(calc %.0f "${m[untracked]}") TPS, bis $(calc %.0f "${m[bis]}") TPS ($(ovh "${m[bis]}" "${m[untracked]}")), peer $(calc %.0f "${m[peer]}") TPS ($(ovh "${m[peer]}" "${m[untracked]}")); bis/peer $(calc %.2f "${m[bis]} / ${m[peer]}") (TPS)"
    figure_time
fi

# --- 3. restock latency, and 6's sizes at 100k
declare -A size6=()
if want 3; then
    fig_started=$SECONDS
    chunk=$(val "LOAD 'bis'; SHOW bis.expand_chunk")
    echo
    echo "== 3. Restock latency: UPDATE inventory SET quantity = 5 WHERE sku = 'X' from 0, autocommit (median of $reps, ms)"
    echo "   bis enqueues at most bis.expand_chunk = $chunk notifications in the stock transaction (txn) and the"
    echo "   rest after it; 'all': until every notification is enqueued, the rest by SELECT bis.expand(1)"
    echo "   in transactions of their own (what bis.claim does when nothing is due); the peer does all in txn"
    declare -A lat=() all=() wal=() ncalls=()
    for n in "${sizes[@]}"; do
        nreps=$reps
        [ "$n" -ge 1000000 ] && nreps=1
        for ((r = 0; r < nreps; r++)); do
            reset_queue
            subscribe "R$n" "$n"
            q -c "UPDATE bench.inventory SET quantity = 0 WHERE sku = 'R$n'" \
              -c "UPDATE peer.inventory SET quantity = 0 WHERE sku = 'R$n'"
            maint bis.subscriptions, bis.notifications, bis.restock_events, bench.inventory, \
                peer.subscriptions, peer.outbox, peer.inventory
            if [ "$n" = "${sizes[2]}" ] && [ $((r + 1)) = "$nreps" ]; then
                size6[bis_waiting]=$(sizes_of bis.subscriptions)
                size6[peer_waiting]=$(sizes_of peer.subscriptions)
            fi
            for ((k = 0; k < 2; k++)); do
                if [ $(((r + k) % 2)) = 0 ]; then v=bis; else v=peer; fi
                q -c CHECKPOINT
                lsn=$(val "SELECT pg_current_wal_insert_lsn()")
                if [ $v = bis ]; then
                    read -r t_txn t_all c_all < <(client time "$warm_bis" \
                        "UPDATE bench.inventory SET quantity = 5 WHERE sku = 'R$n'" "SELECT bis.expand(1)")
                    lat[bis$n]+=" $t_txn"
                    all[bis$n]+=" $t_all"
                    ncalls[$n]=$c_all
                else
                    lat[peer$n]+=" $(client time "$warm_peer" "UPDATE peer.inventory SET quantity = 5 WHERE sku = 'R$n'")"
                fi
                wal[$v$n]+=" $(val "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '$lsn') / 1048576")"
            done
            check "bis notifications for R$n" \
                "$(val "SELECT count(*) || '/' || (SELECT enqueued FROM bis.restock_events WHERE sku = 'R$n')
                          FROM bis.notifications WHERE sku = 'R$n' AND status = 'pending'")" "$n/$n"
            check "peer outbox for R$n" "$(val "SELECT count(*) FROM peer.outbox WHERE sku = 'R$n'")" "$n"
            if [ "$n" = "${sizes[2]}" ] && [ $((r + 1)) = "$nreps" ]; then
                q -c "VACUUM bis.subscriptions, bis.notifications, bis.restock_events, peer.subscriptions, peer.outbox"
                size6[bis_restocked]=$(sizes_of bis.subscriptions bis.notifications bis.restock_events)
                size6[peer_restocked]=$(sizes_of peer.subscriptions peer.outbox)
                size6[n_restocked]=$n
            fi
        done
    done
    base=${sizes[0]}
    blabel=$(awk -v n="$base" 'BEGIN { print (n % 1000 ? n : n / 1000 "k") }')
    printf '%11s | %9s %9s %9s | %9s %9s %9s | %9s %9s %9s | %8s %8s\n' '' bis bis bis peer 'bis txn' 'bis all' \
        'bis txn' 'bis all' peer bis peer
    printf '%11s | %9s %9s %9s | %9s %9s %9s | %9s %9s %9s | %8s %8s\n' subscribers 'txn ms' 'all ms' 'all calls' \
        'ms' '/peer' '/peer' "/$blabel" "/$blabel" "/$blabel" 'WAL MB' 'WAL MB'
    # shellcheck disable=SC2086
    bis_base=$(median ${lat[bis$base]})
    # shellcheck disable=SC2086
    all_base=$(median ${all[bis$base]})
    # shellcheck disable=SC2086
    peer_base=$(median ${lat[peer$base]})
    line="3  restock latency ms, bis stock txn / bis all enqueued / peer:"
    for n in "${sizes[@]}"; do
        # shellcheck disable=SC2086
        b=$(median ${lat[bis$n]})
        # shellcheck disable=SC2086
        a=$(median ${all[bis$n]})
        # shellcheck disable=SC2086
        p=$(median ${lat[peer$n]})
        # shellcheck disable=SC2086
        bw=$(median ${wal[bis$n]})
        # shellcheck disable=SC2086
        pw=$(median ${wal[peer$n]})
        calls=${ncalls[$n]}
        tsv 3 "restock stock transaction $n subscribers" bis "$b" ms
        tsv 3 "restock all enqueued $n subscribers" bis "$a" ms
        tsv 3 "restock stock transaction $n subscribers" peer "$p" ms
        # shellcheck disable=SC2086
        tsv 3 "restock stock transaction $n subscribers runs" bis "$(echo ${lat[bis$n]})" ms
        # shellcheck disable=SC2086
        tsv 3 "restock all enqueued $n subscribers runs" bis "$(echo ${all[bis$n]})" ms
        # shellcheck disable=SC2086
        tsv 3 "restock stock transaction $n subscribers runs" peer "$(echo ${lat[peer$n]})" ms
        tsv 3 "restock stock transaction $n vs $base" bis "$(calc %.2f "$b / $bis_base")" ratio
        tsv 3 "restock all enqueued $n vs $base" bis "$(calc %.2f "$a / $all_base")" ratio
        tsv 3 "restock stock transaction $n vs $base" peer "$(calc %.2f "$p / $peer_base")" ratio
        tsv 3 "restock WAL $n subscribers" bis "$bw" MB
        tsv 3 "restock WAL $n subscribers" peer "$pw" MB
        printf '%11d | %9.1f %9.1f %9d | %9.1f %9.2f %9.2f | %9.1f %9.1f %9.1f | %8.2f %8.2f\n' "$n" "$b" "$a" "$calls" "$p" \
            "$(calc %.4f "$b / $p")" "$(calc %.4f "$a / $p")" \
            "$(calc %.4f "$b / $bis_base")" "$(calc %.4f "$a / $all_base")" "$(calc %.4f "$p / $peer_base")" "$bw" "$pw"
        line+=" $n: $(calc %.1f "$b")/$(calc %.1f "$a")/$(calc %.1f "$p");"
    done
    echo "(all calls: bis.expand calls, the last one finding nothing; /peer: time ratio, below 1 means bis is faster;"
    echo " /$blabel: relative to the $base-subscriber restock; WAL: the restock and, for bis, its expansion;"
    echo " each restock runs right after a CHECKPOINT, and each commit waits for its WAL to be flushed)"
    note "${line%;}"
    figure_time
fi

# --- 4. restock and drain
if want 4; then
    fig_started=$SECONDS
    echo
    echo "== 4. Restock + drain: $drain_n subscribers, one worker, claim 1000 + ack per batch, each call its own transaction"
    declare -A drain=()
    reset_queue
    subscribe "D$drain_n" "$drain_n"
    for v in bis peer; do
        if [ $v = bis ]; then
            maint bis.subscriptions, bis.notifications, bis.restock_events, bench.inventory
            drain[$v]=$(client drain "UPDATE bench.inventory SET quantity = 5 WHERE sku = 'D$drain_n'" \
                "SELECT * FROM bis.claim('w', 1000)" "SELECT bis.ack(\$1::bigint[], 'w')")
            check "bis notifications sent" "$(val "SELECT count(*) FROM bis.notifications WHERE status = 'sent'")" "$drain_n"
            q -c "VACUUM bis.subscriptions, bis.notifications, bis.restock_events"
            size6[bis_drained]=$(sizes_of bis.subscriptions bis.notifications bis.restock_events)
        else
            maint peer.subscriptions, peer.outbox, peer.inventory
            drain[$v]=$(client drain "UPDATE peer.inventory SET quantity = 5 WHERE sku = 'D$drain_n'" \
                "SELECT * FROM peer.claim('w', 1000)" "SELECT peer.ack(\$1::bigint[])")
            check "peer outbox sent" "$(val "SELECT count(*) FROM peer.outbox WHERE status = 'sent'")" "$drain_n"
            q -c "VACUUM peer.subscriptions, peer.outbox"
            size6[peer_drained]=$(sizes_of peer.subscriptions peer.outbox)
        fi
    done
    size6[n_drained]=$drain_n
    printf '%-6s %10s %10s %10s %10s %8s\n' '' 'restock s' 'drain s' 'total s' 'rows/s' batches
    declare -A total=()
    for v in bis peer; do
        read -r rms dms nrows nbatches _ <<<"${drain[$v]}"
        check "$v rows drained" "$nrows" "$drain_n"
        total[$v]=$(calc %.3f "($rms + $dms) / 1000")
        rate=$(calc %.0f "$nrows / ${total[$v]}")
        tsv 4 "restock seconds" "$v" "$(calc %.3f "$rms / 1000")" s
        tsv 4 "drain seconds" "$v" "$(calc %.3f "$dms / 1000")" s
        tsv 4 "restock to drained seconds" "$v" "${total[$v]}" s
        tsv 4 "restock to drained rows/s" "$v" "$rate" rows/s
        printf '%-6s %10.2f %10.2f %10.2f %10d %8d\n' "$v" "$(calc %.3f "$rms / 1000")" \
            "$(calc %.3f "$dms / 1000")" "${total[$v]}" "$rate" "$nbatches"
    done
    printf '%-11s %38.2f\n' "bis/peer" "$(calc %.4f "${total[bis]} / ${total[peer]}")"
    tsv 4 "restock to drained vs peer" bis "$(calc %.2f "${total[bis]} / ${total[peer]}")" ratio
    echo "(bis/peer: ratio of total time, below 1 means bis is faster; the bis restock enqueues the first chunk,"
    echo " its bis.claim calls expand the rest and build each message; the peer hands out its bare rows)"
    note "4  restock + drain $drain_n: bis ${total[bis]} s ($(calc %.0f "$drain_n / ${total[bis]}") rows/s), peer ${total[peer]} s ($(calc %.0f "$drain_n / ${total[peer]}") rows/s); bis/peer $(calc %.2f "${total[bis]} / ${total[peer]}") (time)"
    figure_time
fi

# --- 5. NOTIFY to listener
if want 5; then
    fig_started=$SECONDS
    echo
    echo "== 5. NOTIFY to listener: $notify_n restocks each (3 subscribers per SKU), bis and peer alternating, ms"
    reset_queue
    q -c "INSERT INTO bis.subscriptions (contact_id, sku) SELECT 'c' || c, 'N' || i FROM generate_series(1, $notify_n) i, generate_series(1, 3) c" \
      -c "INSERT INTO peer.subscriptions (contact_id, sku) SELECT 'c' || c, 'N' || i FROM generate_series(1, $notify_n) i, generate_series(1, 3) c"
    maint bis.subscriptions, bis.notifications, bis.restock_events, peer.subscriptions, peer.outbox
    res=$(client notify "$notify_n" "UPDATE bench.inventory SET quantity = 5 WHERE sku = 'N%d'" \
        "UPDATE peer.inventory SET quantity = 5 WHERE sku = 'N%d'")
    printf '%-6s %5s %5s %12s %12s %12s %12s %12s %12s\n' '' n lost 'txn med' 'txn p99' \
        'commit>rcv' 'commit>rcv' 'send>rcv' 'send>rcv'
    printf '%-6s %5s %5s %12s %12s %12s %12s %12s %12s\n' '' '' '' '' '' median p99 median p99
    declare -A n5=()
    while read -r v n lost em e99 am a99 tm t99; do
        printf '%-6s %5d %5d %12.3f %12.3f %12.3f %12.3f %12.3f %12.3f\n' "$v" "$n" "$lost" \
            "$em" "$e99" "$am" "$a99" "$tm" "$t99"
        tsv 5 "restocks lost notifications" "$v" "$lost" count
        tsv 5 "restock transaction median" "$v" "$em" ms
        tsv 5 "restock transaction p99" "$v" "$e99" ms
        tsv 5 "commit acknowledged to received median" "$v" "$am" ms
        tsv 5 "commit acknowledged to received p99" "$v" "$a99" ms
        tsv 5 "sent to received median" "$v" "$tm" ms
        tsv 5 "sent to received p99" "$v" "$t99" ms
        n5[$v]="$tm $t99 $am $a99"
    done <<<"$res"
    echo "(txn: the restock transaction as the writer sees it, sent to commit acknowledged;"
    echo " commit>rcv: commit acknowledged to the listener receiving, negative if the listener was first;"
    echo " send>rcv: restock sent to the listener receiving)"
    read -r btm bt99 bam ba99 <<<"${n5[bis]}"
    read -r ptm pt99 pam pa99 <<<"${n5[peer]}"
    note "5  NOTIFY, restock sent to listener received: bis median $btm ms p99 $bt99 ms, peer median $ptm ms p99 $pt99 ms; after commit acknowledged: bis $bam/$ba99, peer $pam/$pa99 ms"
    figure_time
fi

# --- 6. sizes
if want 6; then
    echo
    echo "== 6. Sizes per million subscriptions (MB, extrapolated linearly; table = heap + TOAST + maps)"
    printf '%-58s %10s %10s %10s\n' '' table indexes total
    size_line() {  # key, label, n
        local tb ib
        [ -n "${size6[$1]:-}" ] || return 0
        read -r tb ib <<<"${size6[$1]}"
        local f="1000000 / $3 / 1048576"
        printf '%-58s %10.1f %10.1f %10.1f\n' "$2" "$(calc %.3f "$tb * $f")" "$(calc %.3f "$ib * $f")" \
            "$(calc %.3f "($tb + $ib) * $f")"
        tsv 6 "$2 table" "${1%%_*}" "$(calc %.3f "$tb * $f")" MB/M
        tsv 6 "$2 indexes" "${1%%_*}" "$(calc %.3f "$ib * $f")" MB/M
        tsv 6 "$2 total" "${1%%_*}" "$(calc %.3f "($tb + $ib) * $f")" MB/M
    }
    n3=${size6[n_restocked]:-1}
    n4=${size6[n_drained]:-1}
    size_line bis_waiting "bis waiting: subscriptions ($n3, before restock)" "$n3"
    size_line peer_waiting "peer waiting: subscriptions" "$n3"
    size_line bis_restocked "bis restocked, all enqueued: subs + notif. + events" "$n3"
    size_line peer_restocked "peer restocked: subscriptions + outbox" "$n3"
    size_line bis_drained "bis drained ($n4, figure 4): subs + notif. + events" "$n4"
    size_line peer_drained "peer drained: subscriptions + outbox" "$n4"
    echo "(after VACUUM; updated and deleted rows leave free space the tables keep)"
    if [ -n "${size6[bis_restocked]:-}" ]; then
        read -r tb ib <<<"${size6[bis_restocked]}"
        read -r tp ip <<<"${size6[peer_restocked]}"
        note "6  size per million notified (after restock): bis $(calc %.0f "($tb + $ib) * 1000000 / $n3 / 1048576") MB, peer $(calc %.0f "($tp + $ip) * 1000000 / $n3 / 1048576") MB; bis/peer $(calc %.2f "($tb + $ib) / ($tp + $ip)")"
    fi
fi

# --- 7. NOTIFY contention
if want 7; then
    fig_started=$SECONDS
    clients=32
    echo
    echo "== 7. NOTIFY contention: pgbench, $clients clients, each restocks its own SKU, ${seconds} s x $rounds rounds (median TPS)"
    echo "   each transaction: 3 new subscriptions, stock 0, stock 5 (one restock, one NOTIFY); synchronous_commit=on"
    reset_queue
    q -c "UPDATE bench.inventory SET quantity = 5 WHERE sku LIKE 'K%'" \
      -c "UPDATE peer.inventory SET quantity = 5 WHERE sku LIKE 'K%'"
    for v in bis peer; do
        if [ $v = bis ]; then subs=bis.subscriptions inv=bench.inventory; else subs=peer.subscriptions inv=peer.inventory; fi
        cat >"$work/contend_$v.sql" <<EOF
BEGIN;
INSERT INTO $subs (contact_id, sku) VALUES ('c1', 'K' || :client_id::text), ('c2', 'K' || :client_id::text), ('c3', 'K' || :client_id::text);
UPDATE $inv SET quantity = 0 WHERE sku = 'K' || :client_id::text;
UPDATE $inv SET quantity = 5 WHERE sku = 'K' || :client_id::text;
END;
EOF
    done
    variants=(bis_on bis_off peer)
    declare -A tps=() heard=()
    for ((r = 0; r < rounds; r++)); do
        for ((k = 0; k < 3; k++)); do
            v=${variants[$(((r + k) % 3))]}
            setting=on
            [ $v = bis_off ] && setting=off
            q -c "ALTER DATABASE bench SET bis.notify = $setting"
            # every run starts from the same tables: what earlier runs left
            # would slow the later ones, whichever variant they are
            reset_queue
            maint bis.subscriptions, bis.notifications, bis.restock_events, bench.inventory, \
                peer.subscriptions, peer.outbox, peer.inventory
            # a mailer listening on both channels, as in production
            "$work/bench_client" listen >"$work/listen.out" &
            listener_pid=$!
            until grep -q listening "$work/listen.out" 2>/dev/null; do sleep 0.05; done
            tps[$v]+=" $(pgbench_tps "$work/contend_${v%_*}.sql" -c $clients)"
            kill -TERM "$listener_pid"
            wait "$listener_pid"
            listener_pid=
            read -r hb hp < <(tail -1 "$work/listen.out")
            if [ $v = peer ]; then heard[$v]+=" $hp"; else heard[$v]+=" $hb"; fi
        done
    done
    q -c "ALTER DATABASE bench RESET bis.notify"
    # bis.notify = off must have sent nothing, and on must have
    for h in ${heard[bis_off]}; do check "NOTIFYs received with bis.notify = off" "$h" 0; done
    for h in ${heard[bis_on]}; do [ "$h" -gt 0 ] || check "NOTIFYs received with bis.notify = on" "$h" ">0"; done
    declare -A m=()
    printf '%-16s %10s %24s\n' variant TPS 'NOTIFYs heard per run'
    for v in "${variants[@]}"; do
        # shellcheck disable=SC2086
        m[$v]=$(median ${tps[$v]})
        tsv 7 "notify contention tps median" "$v" "${m[$v]}" tps
        # shellcheck disable=SC2086
        tsv 7 "notify contention tps rounds" "$v" "$(echo ${tps[$v]})" tps
        # shellcheck disable=SC2086
        printf '%-16s %10.0f %24s\n' "$v" "${m[$v]}" "$(echo ${heard[$v]})"
    done
    onoff=$(calc '%+.1f%%' "(${m[bis_on]} / ${m[bis_off]} - 1) * 100")
    tsv 7 "notify on vs off" bis "$(calc %.2f "(${m[bis_on]} / ${m[bis_off]} - 1) * 100")" %
    tsv 7 "bis on vs peer" bis "$(calc %.4f "${m[bis_on]} / ${m[peer]}")" ratio
    echo "bis notify on vs off: $onoff TPS; bis (on)/peer TPS: $(calc %.2f "${m[bis_on]} / ${m[peer]}")"
    echo "(rounds, TPS: bis on${tps[bis_on]}; bis off${tps[bis_off]}; peer${tps[peer]})"
    echo "(NOTIFYs heard: what one listening mailer received; bis folds the wake-ups of concurrent commits)"
    note "7  NOTIFY contention, $clients clients: bis on $(calc %.0f "${m[bis_on]}") TPS, off $(calc %.0f "${m[bis_off]}") TPS (on vs off $onoff), peer $(calc %.0f "${m[peer]}") TPS; bis(on)/peer $(calc %.2f "${m[bis_on]} / ${m[peer]}") (TPS)"
    figure_time
fi

# --- 8. sustained restock and drain
if want 8; then
    fig_started=$SECONDS
    per=$((sustain_skus * sustain_subs))
    held_cycles=$(((cycles + 2) / 3))
    naptime=10s
    echo
    echo "== 8. Sustained load: cycles of $sustain_skus SKUs x $sustain_subs new subscribers restocked, drained"
    echo "   (claim 1000 + ack), sold out, then housekeeping; bis and peer alternating; autovacuum_naptime=$naptime"
    echo "   housekeeping: bis.purge('0'); the peer: DELETE its sent rows (its used subscriptions are gone already)"
    q -c "ALTER SYSTEM SET autovacuum_naptime = '$naptime'" -c "SELECT pg_reload_conf()" >/dev/null
    reset_queue
    maint bis.subscriptions, bis.notifications, bis.restock_events, bench.inventory, \
        peer.subscriptions, peer.outbox, peer.inventory
    declare -A inv8=([bis]=bench.inventory [peer]=peer.inventory) subs8=([bis]=bis.subscriptions [peer]=peer.subscriptions)
    declare -A claim8=([bis]="SELECT * FROM bis.claim('w', 1000)" [peer]="SELECT * FROM peer.claim('w', 1000)")
    declare -A ack8=([bis]="SELECT bis.ack(\$1::bigint[], 'w')" [peer]="SELECT peer.ack(\$1::bigint[])")
    declare -A keep8=([bis]="SELECT * FROM bis.purge('0')" [peer]="DELETE FROM peer.outbox WHERE status = 'sent'")
    declare -A tables8=([bis]="bis.subscriptions bis.notifications bis.restock_events" [peer]="peer.subscriptions peer.outbox")
    declare -A rms8=() dms8=() mb8=()
    cycle8() {  # variant, phase
        local v=$1 rms dms rows batches tb ib
        q -c "INSERT INTO ${subs8[$v]} (contact_id, sku) SELECT 'c' || c, 'L' || i
                FROM generate_series(1, $sustain_skus) i, generate_series(1, $sustain_subs) c"
        read -r rms dms rows batches _ < <(client drain "UPDATE ${inv8[$v]} SET quantity = 5 WHERE sku LIKE 'L%'" \
            "${claim8[$v]}" "${ack8[$v]}")
        check "$v rows drained in a cycle" "$rows" "$per"
        q -c "UPDATE ${inv8[$v]} SET quantity = 0 WHERE sku LIKE 'L%'" -c "${keep8[$v]}" >/dev/null
        rms8[$v$2]+=" $rms"
        dms8[$v$2]+=" $dms"
        # shellcheck disable=SC2086
        read -r tb ib <<<"$(sizes_of ${tables8[$v]})"
        mb8[$v$2]+=" $(calc %.1f "($tb + $ib) / 1048576")"
    }
    phase8() {  # phase, cycles
        for ((c = 0; c < $2; c++)); do
            cycle8 bis "$1"
            cycle8 peer "$1"
        done
    }
    # steady: the first half warms up (and lets autovacuum find the tables),
    # the second is what the tables settle at
    phase8 warm $((cycles / 2))
    phase8 steady $((cycles - cycles / 2))
    # a long transaction holds back the xmin horizon: vacuum can remove nothing
    PGAPPNAME=bis_bench_holder psql -X -q -c "BEGIN ISOLATION LEVEL REPEATABLE READ" \
        -c "SELECT count(*) FROM bis.items" -c "SELECT pg_sleep(3600)" >/dev/null 2>&1 &
    holder_pid=$!
    for ((t = 0; t < 100; t++)); do
        [ "$(val "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bis_bench_holder'
                    AND backend_xmin IS NOT NULL AND state = 'active'")" = 1 ] && break
        sleep 0.1
    done
    [ "$t" -lt 100 ] || check "a transaction holding the xmin horizon" none one
    phase8 held "$held_cycles"
    val "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'bis_bench_holder'" >/dev/null
    wait "$holder_pid" || true
    phase8 after "$held_cycles"
    q -c "ALTER SYSTEM RESET autovacuum_naptime" -c "SELECT pg_reload_conf()" >/dev/null
    last() { local a=("$@"); echo "${a[-1]}"; }
    # the median of the first and of the last third of a phase's cycles
    thirds() { local a=("$@") k=$((($# + 2) / 3)); echo "$(median "${a[@]:0:k}") $(median "${a[@]: -k}")"; }
    maxof() { printf '%s\n' "$@" | sort -g | tail -1; }
    printf '%-34s %12s %12s %12s %12s\n' "phase (cycles)" 'restock ms' 'drain ms' 'MB max' 'MB last'
    for ph in warm steady held after; do
        for v in bis peer; do
            # shellcheck disable=SC2086
            read -r r_med d_med mb_max mb_last <<<"$(median ${rms8[$v$ph]}) $(median ${dms8[$v$ph]}) $(maxof ${mb8[$v$ph]}) $(last ${mb8[$v$ph]})"
            # shellcheck disable=SC2086
            printf '%-34s %12.1f %12.1f %12.1f %12.1f\n' "$v $ph ($(echo ${mb8[$v$ph]} | wc -w))" \
                "$r_med" "$d_med" "$mb_max" "$mb_last"
            tsv 8 "$ph restock median" "$v" "$r_med" ms
            tsv 8 "$ph drain median" "$v" "$d_med" ms
            tsv 8 "$ph size max" "$v" "$mb_max" MB
            tsv 8 "$ph size last" "$v" "$mb_last" MB
        done
    done
    line="8  sustained, $per notifications a cycle:"
    for v in bis peer; do
        # shellcheck disable=SC2086
        echo "$v MB per cycle: warm${mb8[${v}warm]} | steady${mb8[${v}steady]} | held${mb8[${v}held]} | after${mb8[${v}after]}"
        # shellcheck disable=SC2086
        echo "$v drain ms per cycle, held: $(printf ' %.0f' ${dms8[${v}held]})"
        # shellcheck disable=SC2086
        read -r t1 t3 <<<"$(thirds ${dms8[${v}held]})"
        tsv 8 "held drain first third median" "$v" "$t1" ms
        tsv 8 "held drain last third median" "$v" "$t3" ms
        # shellcheck disable=SC2086
        line+=" $v MB max warm $(maxof ${mb8[${v}warm]}) steady $(maxof ${mb8[${v}steady]}),"
        # shellcheck disable=SC2086
        line+=" drain ms steady $(calc %.0f "$(median ${dms8[${v}steady]})")"
        line+=" held $(calc %.0f "$t1")->$(calc %.0f "$t3") (first -> last third);"
    done
    echo "(medians per cycle of $per notifications; MB: the tables with their indexes and TOAST after each cycle;"
    echo " warm and steady: autovacuum running; held: a REPEATABLE READ transaction open; after: it ended)"
    note "${line%;}"
    figure_time
fi

# --- 9. the delivery rules at claim
if want 9; then
    fig_started=$SECONDS
    rounds9=2
    echo
    echo "== 9. Claims with every delivery rule on against none: $drain_n pending notifications,"
    echo "   claim 1000 + ack, each call its own transaction; the two alternate, $rounds9 rounds each"
    reset_queue
    # figure 4 left the SKU in stock
    q -c "UPDATE bench.inventory SET quantity = 0 WHERE sku = 'D$drain_n'" \
      -c "INSERT INTO bis.subscriptions (contact_id, sku) SELECT 'c' || i, 'D$drain_n' FROM generate_series(1, $drain_n) i" \
      -c "INSERT INTO bis.consents (contact_id, channel, granted, source)
          SELECT 'c' || i, 'email', true, 'bench' FROM generate_series(1, $drain_n) i
          ON CONFLICT DO NOTHING" \
      -c "UPDATE bench.inventory SET quantity = 5 WHERE sku = 'D$drain_n'" \
      -c "SELECT bis.expand(1000000)" \
      -c "UPDATE bench.inventory SET quantity = 0 WHERE sku = 'D$drain_n'" >/dev/null
    check "notifications pending" "$(val "SELECT count(*) FROM bis.notifications WHERE status = 'pending'")" "$drain_n"
    # every rule on and evaluated, none binding: consent rows, quiet hours two
    # hours ahead of the contacts' local time on every channel, a cap of 5 a
    # day, send rates far above the drain, unsubscribe links signed
    ahead=$(val "SELECT extract(hour FROM now() AT TIME ZONE 'Europe/Stockholm')::int")
    quiet=$(printf '%02d:00-%02d:00' $(((ahead + 2) % 24)) $(((ahead + 3) % 24)))
    rules9=("bis.max_per_contact_day = 5" "bis.quiet_hours = '$quiet'"
            "bis.quiet_hours_channels = 'email,sms,push,webpush'" "bis.send_rate = '100000000/1h'"
            "bis.item_send_rate = '100000000/1h'" "bis.unsubscribe_url = 'https://shop.example/u?t='"
            "bis.unsubscribe_mailto = 'unsubscribe@shop.example'")
    declare -A claim9=() drain9=()
    for ((r = 0; r < rounds9; r++)); do
        for v in none all; do
            for g in "${rules9[@]}"; do
                if [ $v = all ]; then q -c "ALTER DATABASE bench SET $g"; else q -c "ALTER DATABASE bench RESET ${g%% =*}"; fi
            done
            q -c "UPDATE bis.notifications SET status = 'pending', claimed_by = NULL, claimed_until = NULL,
                                              sent_at = NULL, attempts = 0, available_at = now() - interval '1 s'" \
              -c "TRUNCATE bis.send_windows" >/dev/null
            maint bis.notifications, bis.consents, bis.contacts
            read -r _ dms rows _ cms < <(client drain "SELECT 1" "SELECT * FROM bis.claim('w', 1000)" \
                "SELECT bis.ack(\$1::bigint[], 'w')")
            check "$v: rows handed out" "$rows" "$drain_n"
            claim9[$v]+=" $cms"
            drain9[$v]+=" $dms"
        done
    done
    for g in "${rules9[@]}"; do q -c "ALTER DATABASE bench RESET ${g%% =*}"; done
    check "rules held nothing" "$(val "SELECT count(*) FROM bis.notifications WHERE status_reason IS NOT NULL")" 0
    printf '%-6s %14s %14s\n' rules 'claims ms' 'claims + acks ms'
    declare -A m9=()
    for v in none all; do
        # shellcheck disable=SC2086
        m9[$v]=$(median ${claim9[$v]})
        # shellcheck disable=SC2086
        printf '%-6s %14.0f %14.0f\n' $v "${m9[$v]}" "$(median ${drain9[$v]})"
        tsv 9 "claims ms median" $v "${m9[$v]}" ms
        # shellcheck disable=SC2086
        tsv 9 "claims ms rounds" $v "$(echo ${claim9[$v]})" ms
    done
    tsv 9 "claims all vs none" bis "$(calc %.2f "${m9[all]} / ${m9[none]}")" ratio
    echo "(rounds, claims ms: none${claim9[none]}; all${claim9[all]})"
    note "9  claims of $drain_n with every delivery rule on $(calc %.0f "${m9[all]}") ms, none $(calc %.0f "${m9[none]}") ms: $(calc %.2f "${m9[all]} / ${m9[none]}")x"
    figure_time
fi

echo
echo "== Summary (bis and the peer measured in the same run)"
for s in "${summary[@]}"; do echo "$s"; done
echo "total time: $((SECONDS - started)) s"
echo "TSV: $out"
tsv 0 "total seconds" run "$((SECONDS - started))" s
