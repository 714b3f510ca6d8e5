# Sourced by the test scripts and test/demo.sh: build and install bis as
# root, then go on as an unprivileged user with a throwaway cluster.

bis_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bis_user=${BIS_TEST_USER:-postgres}

# As root: install dependencies, build and install bis, then run the calling
# script again as $bis_user on a copy of the tree that user may write in.
# As any other user: return and let the script go on.
bis_become_unprivileged() {
    [ "$(id -u)" -ne 0 ] && return 0
    "$bis_root/test/deps.sh"
    make -C "$bis_root" -s >/dev/null
    make -C "$bis_root" -s install >/dev/null
    local copy
    copy=$(mktemp -d /tmp/bis-test.XXXXXX)
    cp -a "$bis_root/." "$copy/"
    chown -R "$bis_user" "$copy"
    local script=${0#"$bis_root"/}
    cd "$copy"
    exec runuser -u "$bis_user" -- env PATH="$PATH" BIS_TEST_COPY="$copy" bash "$copy/$script" "$@"
}

# Start a cluster in a fresh directory, listening only on a private socket;
# it is stopped and removed when the script exits.
bis_start_cluster() {
    local bindir
    bindir=$(pg_config --bindir)
    bis_dir=$(mktemp -d /tmp/bis-cluster.XXXXXX)
    "$bindir/initdb" -D "$bis_dir/data" -A trust -U postgres --no-sync >"$bis_dir/initdb.log"
    # in the configuration file, so that a restart keeps them
    cat >>"$bis_dir/data/postgresql.conf" <<CONF
unix_socket_directories = '$bis_dir'
listen_addresses = ''
port = 5432
fsync = off
max_connections = 50
max_prepared_transactions = 5
CONF
    "$bindir/pg_ctl" -D "$bis_dir/data" -l "$bis_dir/server.log" -w -s start
    trap 'pg_ctl_stop' EXIT
    export PGHOST=$bis_dir PGPORT=5432 PGUSER=postgres PGDATABASE=postgres BIS_PGDATA=$bis_dir/data
}

pg_ctl_stop() {
    "$(pg_config --bindir)/pg_ctl" -D "$bis_dir/data" -m fast -w -s stop || true
    rm -rf "$bis_dir" ${BIS_TEST_COPY:+"$BIS_TEST_COPY"}
}

# For test scripts that count their checks: expect NAME EXPECTED ACTUAL
passed=0
failed=0
expect() {
    if [ "$2" = "$3" ]; then
        echo "ok   $1"
        passed=$((passed + 1))
    else
        echo "FAIL $1: expected $2, got $3"
        failed=$((failed + 1))
    fi
}
