#!/usr/bin/env bash
# Open latency under concurrent load: trustfs vs the native directory vs bindfs, in one run.
#
# What it measures (bench/trustfs_soak.rs `latency` does the timing; results in
# docs/operations.md, "Soak and load figures"): 10,000 files of 4 KiB signed with
# `trustfs repo add` and mounted with `trustfs mount` (default options: no refresh, passthrough if
# the kernel has it), every file read once through each mount first (so trustfs has verified them
# all). Then, per repetition and per target in turn (trustfs, native, bindfs, bindfs-mt),
# THREADS threads open+read+close random files for SECS seconds; it reports p50/p99/p99.9 of the
# open() call alone and of open+read+close, the medians over the repetitions, and the ratios
# trustfs/native and trustfs/bindfs. Page caches are not dropped (warm figures). Timing is
# reported, never asserted.
#
#   bench/latency.sh [REPS] [SECS] [THREADS]     (defaults 3, 30, 64)
#
# bindfs is mounted as `bindfs -o ro BACKING BINDMNT` (single-threaded, its default) and, for
# reference, as `bindfs -o ro --multithreaded` ("bindfs-mt"), both with the soft descriptor
# limit raised to the hard limit. Failed operations are counted by errno and left out of the latencies. Environment: LAT_DIR (work dir,
# default /var/tmp/trustfs-latency; the content is kept between runs), TRUSTFS_BIN (a trustfs
# binary to test instead of building target/release/trustfs). Needs root, /dev/fuse, bindfs
# (installed with apt-get if missing).
set -euo pipefail
REPS=${1:-3}
SECS=${2:-30}
THREADS=${3:-64}
N=10000
W=${LAT_DIR:-/var/tmp/trustfs-latency}
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "latency.sh: needs root (FUSE mounts)" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "latency.sh: /dev/fuse is missing" >&2; exit 1; }
command -v bindfs > /dev/null || apt-get install -y bindfs >&2

REPO=$W/repo KEYS=$W/keys BACK=$W/backing MNT=$W/mnt STATE=$W/state BMNT=$W/bindfs BMNT_MT=$W/bindfs-mt
PID= SAMPLER=

cleanup() {
    if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; fi
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"; wait "$PID" || true
    fi
    for m in "$MNT" "$BMNT" "$BMNT_MT"; do
        if mountpoint -q "$m" 2>/dev/null; then umount "$m" 2>/dev/null || umount -l "$m"; fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup

if [ -z "${TRUSTFS_BIN:-}" ]; then
    cargo build --release >&2
    TRUSTFS_BIN=target/release/trustfs
fi
cargo build --release --example trustfs_soak >&2
mkdir -p "$W"
cp "$TRUSTFS_BIN" "$W/trustfs"
T=$W/trustfs

# Content and repository, made once and kept (delete $W to start over).
if [ ! -f "$REPO/metadata/1.root.json" ] || [ "$(find "$BACK/small" -type f | wc -l)" != "$N" ]; then
    rm -rf "$REPO" "$KEYS" "$BACK"
    mkdir -p "$BACK/small"
    for i in $(seq 0 $((N - 1))); do head -c 4096 /dev/urandom > "$BACK/small/$i"; done
    "$T" repo init "$REPO" --keys "$KEYS" > /dev/null
    "$T" repo add "$REPO" "$BACK" --keys "$KEYS" > /dev/null
fi
rm -rf "$STATE"
mkdir -p "$MNT" "$STATE" "$BMNT" "$BMNT_MT"

"$T" mount --root "$REPO/metadata/1.root.json" --metadata "$REPO/metadata" --backing "$BACK" \
    --state-dir "$STATE" "$MNT" 2> "$W/trustfs.log" &
PID=$!
for _ in $(seq 300); do mountpoint -q "$MNT" && break; sleep 0.1; done
mountpoint -q "$MNT" || { echo "latency.sh: trustfs did not mount; see $W/trustfs.log" >&2; exit 1; }
# bindfs holds one descriptor per open handle until the kernel's RELEASE reaches it; under 64
# closing threads those lag, and it can hit its descriptor limit (EMFILE on open, counted).
# It gets the hard limit, as trustfs raises its own to it at start.
ulimit -n "$(ulimit -Hn)"
bindfs -o ro "$BACK" "$BMNT"
BPID=$(pgrep -n -x bindfs)
bindfs -o ro --multithreaded "$BACK" "$BMNT_MT"
BPID_MT=$(pgrep -n -x bindfs)

# Every second: RSS and descriptors of the three daemons, and trustfs's handle table (from its
# status record, so the sampler adds no request to the mount).
sample() {
    set +e +o pipefail       # a daemon or its status record missing for a moment is not fatal
    local p status=
    echo "time,trustfs_rss_kb,trustfs_fds,trustfs_handles,bindfs_rss_kb,bindfs_fds,bindfs_mt_rss_kb,bindfs_mt_fds"
    while sleep 1; do
        [ -n "$status" ] || status=$(grep -lE "\"pid\": ?$PID," /run/trustfs/*.json 2>/dev/null | head -1)
        printf '%s' "$(date +%s)"
        for p in "$PID" "$BPID" "$BPID_MT"; do
            printf ',%s,%s' "$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)" \
                "$(ls "/proc/$p/fd" 2>/dev/null | wc -l)"
            if [ "$p" = "$PID" ]; then
                printf ',%s' "$(grep -oE '"handles": ?[0-9]+' "$status" 2>/dev/null | grep -oE '[0-9]+$')"
            fi
        done
        echo
    done
}
sample > "$W/daemons.csv" &
SAMPLER=$!

{
    echo "trustfs binary: $TRUSTFS_BIN ($("$T" --version)), sha256 $(sha256sum < "$T" | cut -c1-16); $(bindfs --version | head -1)"
    echo "tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --short -- src Cargo.toml 2>/dev/null | wc -l) changed files under src/, Cargo.toml"
    echo "machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command: bench/latency.sh $REPS $SECS $THREADS"
} | tee "$W/run-info.txt"

target/release/examples/trustfs_soak latency --files "$N" --reps "$REPS" --secs "$SECS" \
    --threads "$THREADS" trustfs="$MNT" native="$BACK" bindfs="$BMNT" bindfs-mt="$BMNT_MT" \
    | tee "$W/results.txt"
kill "$SAMPLER"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -F, 'NR > 1 {
    for (i = 2; i <= 8; i++) if ($i + 0 > max[i]) max[i] = $i + 0
} END {
    printf "daemon peaks during the run (%s): trustfs RSS %.0f MiB, %d fds, %d handles; bindfs RSS %.0f MiB, %d fds; bindfs-mt RSS %.0f MiB, %d fds\n", FILENAME, max[2] / 1024, max[3], max[4], max[5] / 1024, max[6], max[7] / 1024, max[8]
}' "$W/daemons.csv" | tee -a "$W/results.txt"
echo "trustfs at the end: RSS $(awk '/^VmRSS/ {print $2, $3}' "/proc/$PID/status"), $(ls "/proc/$PID/fd" | wc -l) fds" | tee -a "$W/results.txt"
if grep -v ' verified ' "$W/trustfs.log" | grep -qE 'DENY|ERROR|panic'; then
    echo "latency.sh: the trustfs log has denials or errors:" >&2
    grep -E 'DENY|ERROR|panic' "$W/trustfs.log" | head >&2
fi
