# Sourced by the test scripts and test/demo.sh: build and install bis as
# root, then go on as an unprivileged user with a throwaway cluster.

bis_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# UTF-8 whatever the machine's locale: the clusters' encoding, and how psql
# aligns the expected output's non-ASCII text
export LC_ALL=C.UTF-8
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

# -- Citus, for test/citus.sh and test/bench/citus.sh.  Citus is a test
# dependency only: bis neither links to nor ships any of it.  Its source
# (13.2.2) and the one patch PostgreSQL 15.20 needs are in ../shared/citus,
# or in BIS_CITUS_SRC.
bis_citus_src=${BIS_CITUS_SRC:-$bis_root/../shared/citus}

bis_citus_installed() {
    [ -f "$(pg_config --pkglibdir)/citus.so" ] &&
        grep -q "default_version = '13.2-1'" "$(pg_config --sharedir)/extension/citus.control" 2>/dev/null
}

# Build Citus and install it into pg_config's directories, unless it is there
bis_install_citus() {
    local build version=13.2.2
    bis_citus_installed && return 0
    if [ ! -f "$bis_citus_src/citus-$version.tar.gz" ]; then
        echo "citus: $bis_citus_src/citus-$version.tar.gz not found; set BIS_CITUS_SRC" >&2
        exit 1
    fi
    build=$(mktemp -d /tmp/bis-citus-build.XXXXXX)
    echo "citus: building $version in $build"
    tar xzf "$bis_citus_src/citus-$version.tar.gz" -C "$build"
    (
        cd "$build/citus-$version"
        patch -s -p1 <"$bis_citus_src/citus-pg15-have_createdb_privilege.patch"
        ./configure PG_CONFIG="$(command -v pg_config)" >"$build/configure.log" 2>&1
        make -s -j2 with_llvm=no >"$build/make.log" 2>&1
        make -s install with_llvm=no >"$build/install.log" 2>&1
    ) || { tail -20 "$build"/*.log >&2; exit 1; }
    rm -rf "$build"
}

# As root: dependencies, Citus, bis, then on as $bis_user (see
# bis_become_unprivileged); as anyone else: Citus must be installed or
# installable by that user
bis_citus_prepare() {
    if [ "$(id -u)" -eq 0 ]; then
        "$bis_root/test/deps.sh" citus
        bis_install_citus
        bis_become_unprivileged "$@"
    fi
    bis_install_citus
    cd "$bis_root"
}

# A coordinator and two workers on loopback, ports BIS_CITUS_PORT (default
# 5525) and the next two, sockets in a fresh directory; stopped and removed
# when the script exits.  Sets bis_citus_dir and bis_citus_ports, and PGHOST
# for psql -p PORT.  Extra lines for postgresql.conf may be given.
bis_citus_start_node() {
    "$(pg_config --bindir)/pg_ctl" -D "$bis_citus_dir/$1" -l "$bis_citus_dir/$1.log" -w -s start
}

bis_stop_citus() {
    local p
    for p in "${bis_citus_ports[@]}"; do
        "$(pg_config --bindir)/pg_ctl" -D "$bis_citus_dir/$p" -m immediate -w -s stop >/dev/null 2>&1 || true
    done
    rm -rf "$bis_citus_dir" ${BIS_TEST_COPY:+"$BIS_TEST_COPY"}
}

bis_start_citus() {
    local port=${BIS_CITUS_PORT:-5525} p
    bis_citus_ports=("$port" $((port + 1)) $((port + 2)))
    bis_citus_dir=$(mktemp -d /tmp/bis-citus.XXXXXX)
    export PGHOST=$bis_citus_dir PGUSER=postgres PGDATABASE=postgres
    trap bis_stop_citus EXIT
    for p in "${bis_citus_ports[@]}"; do
        "$(pg_config --bindir)/initdb" -D "$bis_citus_dir/$p" -A trust -U postgres --no-sync \
            >"$bis_citus_dir/initdb.log"
        cat >>"$bis_citus_dir/$p/postgresql.conf" <<CONF
shared_preload_libraries = 'citus'
unix_socket_directories = '$bis_citus_dir'
listen_addresses = '127.0.0.1'
port = $p
fsync = off
max_connections = 100
max_prepared_transactions = 100
citus.max_cached_conns_per_worker = 2
$(printf '%s\n' "$@")
CONF
        bis_citus_start_node "$p"
        psql -X -q -p "$p" -c "CREATE EXTENSION citus"
    done
    psql -X -q -At -v ON_ERROR_STOP=1 -p "${bis_citus_ports[0]}" \
        -c "SELECT citus_set_coordinator_host('127.0.0.1', ${bis_citus_ports[0]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${bis_citus_ports[1]})" \
        -c "SELECT citus_add_node('127.0.0.1', ${bis_citus_ports[2]})" >/dev/null
}
