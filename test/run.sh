#!/usr/bin/env bash
# The whole test suite against a throwaway cluster: pg_regress, isolation
# specs, pgTAP, the pgbench concurrency test, a crash test, bis-mailer end
# to end against SMTP and webhook servers on loopback, and a short run of
# each fuzzing harness.  Run as root on a fresh Debian 12 machine (it
# installs what it needs), or as a user who has built and installed bis.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bis_become_unprivileged "$@"
cd "$bis_root"
bis_start_cluster

passed=0
failed=0
suite() {
    local name=$1
    shift
    echo "== $name"
    if "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "== $name FAILED"
        for f in regression.diffs output_iso/regression.diffs; do
            [ -s "$f" ] && cat "$f"
        done
    fi
    return 0
}

suite "pg_regress and isolation" make -s installcheck
suite "upgrade: fresh installation = 0.1 updated step by step" test/upgrade.sh
psql -X -q -c "CREATE DATABASE bis_tap" -d postgres
psql -X -q -c "CREATE EXTENSION pgtap" -c "CREATE EXTENSION bis" -d bis_tap
suite "pgTAP" pg_prove -d bis_tap test/pgtap/*.sql
suite "pgbench concurrency" test/concurrency.sh
suite "a restock's statements planned once a session" test/plans.sh
suite "crash in the middle of an expansion" test/restart.sh
suite "pg_dump and pg_restore" test/dump.sh
suite "prometheus-postgres-exporter with bis's queries" test/exporter.sh
suite "bis-mailer end to end" test/mailer.sh
suite "fuzzing: each harness for 20 s" test/fuzz/run.sh 20

echo "bis: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
