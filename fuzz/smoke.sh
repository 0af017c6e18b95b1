#!/usr/bin/env bash
# Build every fuzz target and run each for N seconds (default 20) on its committed corpus
# (fuzz/corpus/<target>, plus fuzz/regressions/<target>), one at a time, single process. Fails on
# any crash, timeout or OOM (the input is kept in fuzz/artifacts/<target>/); prints executions per
# target. Needs nightly and cargo-fuzz (`cargo install cargo-fuzz --locked`).
#
#   fuzz/smoke.sh [SECONDS] [TARGET...]
#
# The committed corpus is only read: new inputs go to a temporary directory. Set FUZZ_SANITIZER
# (default none: the fuzzed code is safe Rust; `address` checks unsafe code too, at half speed).
set -euo pipefail
cd "$(dirname "$0")"
SECS="${1:-20}"
shift || true
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=(metadata cjson target_path status_record mountinfo http)
SAN="${FUZZ_SANITIZER:-none}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-+nightly}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! cargo "$TOOLCHAIN" fuzz build -s "$SAN" >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log" >&2
    echo "fuzz smoke: build failed" >&2
    exit 1
fi

failed=()
printf '%-14s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${TARGETS[@]}"; do
    mkdir -p "$work/$t" "$work/artifacts/$t"
    dirs=("corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    dict=()
    [ -f "$t.dict" ] && dict=("-dict=$t.dict")
    log="$work/$t.log"
    rc=0
    cargo "$TOOLCHAIN" fuzz run -s "$SAN" "$t" "$work/$t" "${dirs[@]}" -- \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/$t/" "${dict[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ "$rc" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $rc)"
        failed+=("$t")
        mkdir -p "artifacts/$t"
        cp "$work/artifacts/$t/"* "artifacts/$t/" 2>/dev/null || true
        echo "---- $t: last lines of the fuzzer's log" >&2
        grep -v '^#[0-9]' "$log" | tail -40 >&2
    fi
    printf '%-14s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${corpus:-?}" "$result"
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/; reproduce with" \
        "cargo +nightly fuzz run -s $SAN TARGET fuzz/artifacts/TARGET/FILE)" >&2
    exit 1
fi
echo "fuzz smoke: OK (${SECS}s per target)"
