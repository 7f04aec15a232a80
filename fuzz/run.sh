#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 60), one after the other.
#
#   fuzz/run.sh [seconds]
#
# Works on the stable toolchain: cargo-fuzz needs nightly-only rustc flags (-Zsanitizer,
# sanitizer coverage), which RUSTC_BOOTSTRAP=1 unlocks on stable. Installs cargo-fuzz with
# `cargo install --locked` if it is missing. New inputs a run finds go to fuzz/work/corpus/
# (ignored by git); the committed seeds in fuzz/corpus/ are only read. Exits non-zero if any
# target crashed (or failed to build); a crash leaves its reproducer under
# fuzz/artifacts/<target>/ and the log under fuzz/work/logs/<target>.log.
#
# Environment: FUZZ_TARGETS="demux sdp_offer" runs only those; FUZZ_ARGS adds libFuzzer flags.
set -uo pipefail

secs="${1:-60}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install --locked cargo-fuzz || exit 2
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
echo "== building: $(echo $targets)"
# -a: debug assertions and overflow checks on, as in `cargo test`.
if ! cargo fuzz build -a; then
    echo "fuzz targets failed to build" >&2
    exit 2
fi

mkdir -p work/logs
failed=()
printf '%-14s %10s %8s %8s %8s  %s\n' target execs exec/s cov ft result
for t in $targets; do
    mkdir -p "work/corpus/$t" "corpus/$t"
    dict=()
    case "$t" in
        sdp_offer) dict=(-dict=dict/sdp.dict) ;;
        policy_config) dict=(-dict=dict/toml.dict) ;;
    esac
    log="work/logs/$t.log"
    # The first corpus directory receives new inputs; the seeds are read only.
    cargo fuzz run -a "$t" "work/corpus/$t" "corpus/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=30 -rss_limit_mb=4096 \
        "${dict[@]}" ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $rc, log $log)"
        failed+=("$t")
    fi
    printf '%-14s %10s %8s %8s %8s  %s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "$result"
    if [ "$rc" -ne 0 ]; then
        grep -E 'panicked at|ERROR: |SUMMARY|Test unit written to' "$log" | head -8 | sed 's/^/    /'
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
echo "all targets ran ${secs}s without a crash"
