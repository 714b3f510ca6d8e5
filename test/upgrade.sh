#!/usr/bin/env bash
# The upgrade path: an installation made at 0.1 and updated step by step to
# the current version (every committed bis--X--Y.sql in turn) must be the same
# as a fresh installation of the current version, object by object: every
# function's definition, table, column, constraint, index, view, sequence,
# type, trigger, comment, privilege, extension member and pg_dump mark
# (test/upgrade/describe.sql).  Any difference fails, and is printed.
#
# Runs against the throwaway cluster of test/run.sh (PGHOST, PGPORT, PGUSER).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$bis_root"

admin_db=${PGDATABASE:-postgres}
work=$(mktemp -d /tmp/bis-upgrade.XXXXXX)
drop_databases() {
    psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS bis_fresh WITH (FORCE)" \
        -c "DROP DATABASE IF EXISTS bis_upgraded WITH (FORCE)" >/dev/null 2>&1 || true
}
trap 'drop_databases; rm -rf "$work"' EXIT
q() { local db=$1; shift; psql -X -q -v ON_ERROR_STOP=1 -d "$db" "$@"; }

drop_databases
psql -X -q -d "$admin_db" -c "CREATE DATABASE bis_fresh" -c "CREATE DATABASE bis_upgraded"
q bis_fresh -c "CREATE EXTENSION bis"
current=$(q bis_fresh -At -c "SELECT extversion FROM pg_extension WHERE extname = 'bis'")

# the versions the update scripts lead through, from 0.1 on
q bis_upgraded -c "CREATE EXTENSION bis VERSION '0.1'"
path="0.1"
version=0.1
while [ "$version" != "$current" ]; do
    next=$(ls sql/bis--"$version"--*.sql 2>/dev/null | sed -n "s/.*--$version--\(.*\)\.sql/\1/p" | head -1)
    if [ -z "$next" ]; then
        expect "an update path from 0.1 to $current" "$current" "none after $version"
        break
    fi
    q bis_upgraded -c "ALTER EXTENSION bis UPDATE TO '$next'"
    version=$next
    path="$path -> $next"
done
echo "upgrade: $path"

q bis_fresh -f test/upgrade/describe.sql >"$work/fresh.txt"
q bis_upgraded -f test/upgrade/describe.sql >"$work/upgraded.txt"
expect "the description has every kind of object" \
    "extension member schema function relation column constraint index view sequence type trigger event-trigger template" \
    "$(for k in extension member schema function relation column constraint index view sequence type trigger 'event trigger' 'builtin template'; do
           grep -q "^$k | " "$work/fresh.txt" && printf '%s ' "${k/event trigger/event-trigger}"; done |
       sed 's/builtin template/template/; s/ $//')"
if diff -u "$work/fresh.txt" "$work/upgraded.txt" >"$work/diff"; then
    expect "$current installed fresh = 0.1 updated to $current ($(wc -l <"$work/fresh.txt") lines)" same same
else
    cat "$work/diff"
    expect "$current installed fresh = 0.1 updated to $current" same "$(grep -c '^[-+][^-+]' "$work/diff") lines differ"
fi

echo "upgrade: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
