#!/usr/bin/env bash
# Install what building and testing bis needs on Debian 12, if it is missing.
# "test/deps.sh citus" adds what building Citus from source needs (test/citus.sh).
set -euo pipefail

pg=${PG_MAJOR:-15}
need=()
# bis-mailer: libcurl and OpenSSL to build; its test: an SMTP server (aiosmtpd),
# push providers (python3-cryptography, python3-h2), openssl for certificates,
# systemd-analyze for the unit; the monitoring test: prometheus-postgres-exporter;
# test/fuzz: clang, libFuzzer (libclang-rt-dev) and llvm-symbolizer (llvm) for
# readable reports; with "citus", what building Citus for test/citus.sh needs
extra=()
[ "${1:-}" = citus ] && extra=(liblz4-dev libzstd-dev libkrb5-dev)
for p in make gcc "postgresql-$pg" "postgresql-server-dev-$pg" "postgresql-$pg-pgtap" \
         libtap-parser-sourcehandler-pgtap-perl libcurl4-openssl-dev libssl-dev pkg-config \
         python3-aiosmtpd python3-cryptography python3-h2 openssl systemd \
         prometheus-postgres-exporter curl clang libclang-rt-dev llvm ${extra[@]+"${extra[@]}"}; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages: ${need[*]}; run as root to install them" >&2
    exit 1
fi
# the tests start clusters of their own: Debian's default one is not wanted
mkdir -p /etc/postgresql-common
[ -e /etc/postgresql-common/createcluster.conf ] ||
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
echo "deps: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
