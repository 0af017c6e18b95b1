#!/usr/bin/env bash
# Soak test of a live-updated local mount, end to end through the real `trustfs` binary.
#
# What it measures (bench/trustfs_soak.rs does the work; docs/operations.md, "Soak and load
# figures", has results): a repository of ~2000 files (1-64 KiB, 1% of 1-8 MiB, in
# subdirectories) published with `trustfs repo add`, mounted with `--refresh-interval 1s`, then for
# MINUTES minutes at once:
#   - 8 readers read random files through the mount and sha256 them: a successful read whose hash
#     was never published for that path is a VIOLATION (tampered bytes served) - must be 0;
#   - a tamperer alters a random backing file every ~50 ms and restores it shortly after;
#   - a publisher changes ~5% of the content every 10 s (`trustfs repo add`, then a deploy);
#   - a sampler records the daemon's RSS, open fds and /metrics every 5 s (samples.csv).
# It prints reads, bytes, denials, faults, violations, metadata switches, RSS and fd count (first
# vs last minute), then stops the daemon with SIGTERM and checks it exits 0 and unmounts.
# Exit status 1 if anything of that failed (violations, stale reads, bad exit, leftover mount).
#
#   bench/soak.sh [MINUTES]              (default 10)
#
# Environment: SOAK_DIR (work dir, default /var/tmp/trustfs-soak; wiped at start), SOAK_FILES
# (default 2000), TRUSTFS_BIN (a trustfs binary to test instead of building target/release/trustfs).
# Needs root and /dev/fuse.
set -euo pipefail
MINUTES=${1:-10}
W=${SOAK_DIR:-/var/tmp/trustfs-soak}
FILES=${SOAK_FILES:-2000}
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "soak.sh: needs root (FUSE mount)" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "soak.sh: /dev/fuse is missing" >&2; exit 1; }

# A mount left under $W by an earlier run would make the wipe below walk into it.
cleanup() {
    local pid
    if [ -f "$W/daemon.pid" ]; then          # the daemon outlived the driver (crash, Ctrl-C)
        pid=$(cat "$W/daemon.pid")
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q 'trustfs mount'; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        fi
        rm -f "$W/daemon.pid"
    fi
    if mountpoint -q "$W/mnt" 2>/dev/null; then
        echo "soak.sh: unmounting leftover $W/mnt" >&2
        umount "$W/mnt" 2>/dev/null || umount -l "$W/mnt"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup

if findmnt -rn -o TARGET | grep -q "^$W/"; then
    echo "soak.sh: something is still mounted under $W; not wiping it" >&2; exit 1
fi
rm -rf "$W"
mkdir -p "$W"

if [ -z "${TRUSTFS_BIN:-}" ]; then
    cargo build --release >&2
    TRUSTFS_BIN=target/release/trustfs
fi
cargo build --release --example trustfs_soak >&2
# Test a snapshot of the binary: a rebuild in the tree during the soak must not change it.
cp "$TRUSTFS_BIN" "$W/trustfs"
{
    echo "trustfs binary: $TRUSTFS_BIN ($("$W/trustfs" --version)), sha256 $(sha256sum < "$W/trustfs" | cut -c1-16)"
    echo "tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --short -- src Cargo.toml 2>/dev/null | wc -l) changed files under src/, Cargo.toml"
    echo "machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command: bench/soak.sh $MINUTES  (SOAK_FILES=$FILES, SOAK_DIR=$W)"
} | tee "$W/run-info.txt" >&2

status=0
target/release/examples/trustfs_soak soak --trustfs "$W/trustfs" --work "$W" \
    --minutes "$MINUTES" --files "$FILES" || status=$?
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$W/run-info.txt"
[ "$status" = 0 ] && echo "soak: PASS" || echo "soak: FAIL (exit $status); evidence in $W"
exit "$status"
