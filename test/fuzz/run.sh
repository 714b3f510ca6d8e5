#!/usr/bin/env bash
# Builds the libFuzzer harnesses of test/fuzz and runs each for SECONDS
# (default 20), BIS_FUZZ_JOBS (default 2) at a time, starting from its seeds
# in corpus/TARGET and what earlier runs found in build/corpus/TARGET.
#
#   test/fuzz/run.sh [SECONDS [TARGET...]]
#
# Exits 1 if a harness crashed: its input is left in crashes/TARGET/ and
# printed in base64, and build/fuzz_TARGET FILE runs it again.  Needs clang
# and libFuzzer (test/deps.sh installs them); PG_CONFIG names the
# PostgreSQL whose headers and libraries to build with.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-20}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || read -r -a targets <<<"$(make -s -f Makefile print-targets)"
jobs=${BIS_FUZZ_JOBS:-2}

clang=${CLANG:-$(command -v clang || command -v clang-14 || echo clang)}
make -s PG_CONFIG="${PG_CONFIG:-pg_config}" CLANG="$clang" $(printf 'build/fuzz_%s ' "${targets[@]}")

# symbolized reports; leaks are crashes too
symbolizer=$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
[ -n "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH=$symbolizer

run() {
    local t=$1 flags=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048
                      -print_final_stats=1 -artifact_prefix="crashes/$t/")
    mkdir -p "build/corpus/$t" "crashes/$t"
    [ -f "dict/$t.dict" ] && flags+=(-dict="dict/$t.dict")
    case $t in
        json | http_answer | header | config) flags+=(-max_len=16384) ;;
    esac
    "build/fuzz_$t" "${flags[@]}" "build/corpus/$t" "corpus/$t" >"build/$t.log" 2>&1
}

# one line per target: what ran, and how far it got
report() {
    local t=$1 rc=$2 log=build/$1.log
    local execs cov ft corp
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ "$rc" -eq 0 ]; then
        printf 'ok   %-12s %6ss %12s execs  cov %-5s ft %-6s corpus %s\n' "$t" "$seconds" \
            "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
        return 0
    fi
    echo "FAIL $t: exit $rc, after ${execs:-?} execs; log in test/fuzz/$log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz: |.*runtime error)' "$log" | head -5 | sed 's/^/  /'
    grep -E '^ +#[0-9]+ .* in ' "$log" | grep -v -E 'libFuzzer|fuzzer::|libc|__sanitizer|_start' |
        head -8 | sed 's/^/  /'
    local f
    for f in "crashes/$t"/*; do
        [ -f "$f" ] || continue
        echo "  input test/fuzz/$f (test/fuzz/build/fuzz_$t test/fuzz/$f runs it again), in base64:"
        base64 -w 76 "$f" | head -40 | sed 's/^/    /'
    done
    return 1
}

failed=0
pids=()
names=()
for t in "${targets[@]}"; do
    # at most $jobs at once
    while [ ${#pids[@]} -ge "$jobs" ]; do
        rc=0
        wait "${pids[0]}" || rc=$?
        report "${names[0]}" "$rc" || failed=1
        pids=("${pids[@]:1}")
        names=("${names[@]:1}")
    done
    run "$t" &
    pids+=($!)
    names+=("$t")
done
for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    report "${names[$i]}" "$rc" || failed=1
done
exit "$failed"
