#!/usr/bin/env bash
# Benchmark of the verified mount (see docs/mount.md for what each figure means).
# Needs root, /dev/fuse and bindfs (apt-get install -y bindfs). Page caches are NOT dropped:
# every figure is warm-cache (backing files are read once before timing), so the numbers compare
# the filesystems, not the disk. Dirty pages are flushed (sync) before each first-open run.
#
#   bench/mount-bench.sh [REPS]        (default 5 repetitions; medians are reported)
set -euo pipefail
REPS=${1:-5}
cd "$(dirname "$0")/.."
cargo build --release --example trustfs_bench >&2
B=target/release/examples/trustfs_bench
W=${BENCH_DIR:-/var/tmp/trustfs-bench}
BACK=$W/backing MNT=$W/mnt STATE=$W/state BMNT=$W/bindfs
NSMALL=10000

cleanup() {
    exec 9>&- 2>/dev/null || true
    for m in "$MNT" "$BMNT"; do mountpoint -q "$m" && umount -l "$m"; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

mkdir -p "$BACK/small" "$MNT" "$STATE" "$BMNT"
if [ ! -f "$BACK/big.bin" ]; then
    head -c $((1 << 30)) /dev/urandom > "$BACK/big.bin"
    for i in $(seq 0 $((NSMALL - 1))); do head -c 4096 /dev/urandom > "$BACK/small/$i"; done
fi
cat "$BACK/big.bin" > /dev/null; cat "$BACK"/small/* > /dev/null   # warm the page cache

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

start_trustfs() {
    rm -f "$W/ctl"; mkfifo "$W/ctl"
    "$B" mount "$BACK" "$MNT" "$STATE" "$@" < "$W/ctl" 2>>"$W/trustfs.log" &
    exec 9>"$W/ctl"
    for _ in $(seq 1200); do mountpoint -q "$MNT" && return; sleep 0.1; done
    echo "mount did not appear" >&2; exit 1
}
stop_trustfs() { exec 9>&-; wait; }

# (a) first open + sequential read of 1 GiB on a fresh mount, in each read mode, vs hashing the
# same file: chunk-verified with a signed chunk root (outboards in $W/chunks, as `repo add`
# publishes them), chunk-verified without one (a python-tuf repository: one sha256 pass that
# also builds the tree), and the private copy. Modes alternate within a repetition.
hash_t=$(for _ in $(seq "$REPS"); do "$B" hash "$BACK/big.bin"; done | median)
first_root=() first_plain=() first_copy=() lazy=() grow_root=() grow_plain=()
state_kb() { du -sk "$STATE" | cut -f1; }
for _ in $(seq "$REPS"); do
    # Each copy-mode first open writes a 1 GiB private copy; flush the previous run's dirty pages
    # first (outside the timed region) so a run is not slowed by the writeback of the one before.
    sync
    rm -rf "$STATE"; mkdir -p "$STATE"; sync
    start_trustfs --chunk-roots "$W/chunks"; k0=$(state_kb)
    first_root+=("$("$B" read "$MNT/big.bin")"); grow_root+=($(( $(state_kb) - k0 )))
    stop_trustfs
    rm -rf "$STATE"; mkdir -p "$STATE"; sync
    start_trustfs; k0=$(state_kb)
    first_plain+=("$("$B" read "$MNT/big.bin")"); grow_plain+=($(( $(state_kb) - k0 )))
    stop_trustfs
    sync
    start_trustfs --private-copy
    first_copy+=("$("$B" read "$MNT/big.bin")")
    stop_trustfs
    start_trustfs --chunk-roots "$W/chunks" --lazy
    lazy+=("$("$B" firstread "$MNT/big.bin")")
    stop_trustfs
    # The copy's dirty pages and freed store would slow the next repetition's first runs.
    rm -rf "$STATE"; mkdir -p "$STATE"; sync
done
first_t=$(printf '%s\n' "${first_root[@]}" | median)
plain_t=$(printf '%s\n' "${first_plain[@]}" | median)
copy_t=$(printf '%s\n' "${first_copy[@]}" | median)
lazy_t=$(printf '%s\n' "${lazy[@]}" | median)
grow_root_k=$(printf '%s\n' "${grow_root[@]}" | median)
grow_plain_k=$(printf '%s\n' "${grow_plain[@]}" | median)

# (b) the same file opened again (verified record, pages kept in the page cache) vs native.
start_trustfs --chunk-roots "$W/chunks"
"$B" read "$MNT/big.bin" > /dev/null
again_t=$(for _ in $(seq "$REPS"); do "$B" read "$MNT/big.bin"; done | median)
native_t=$(for _ in $(seq "$REPS"); do "$B" read "$BACK/big.bin"; done | median)

# (c) 10,000 x 4 KiB open+read+close, second pass, vs bindfs -r --multithreaded. Both mounts are
# up at once and the passes alternate (trustfs, bindfs, native, ...), so drift in the machine's
# load hits both sides alike.
bindfs -r --multithreaded "$BACK" "$BMNT" 9>&-   # the daemon must not inherit the control fifo
"$B" readsmall "$MNT/small" $NSMALL > /dev/null
"$B" readsmall "$BMNT/small" $NSMALL > /dev/null
small=() bind=() nat=()
for _ in $(seq "$REPS"); do
    small+=("$("$B" readsmall "$MNT/small" $NSMALL)")
    bind+=("$("$B" readsmall "$BMNT/small" $NSMALL)")
    nat+=("$("$B" readsmall "$BACK/small" $NSMALL)")
done
small_t=$(printf '%s\n' "${small[@]}" | median)
bindfs_t=$(printf '%s\n' "${bind[@]}" | median)
small_native_t=$(printf '%s\n' "${nat[@]}" | median)
stop_trustfs
bindfs_big_t=$(for _ in $(seq "$REPS"); do "$B" read "$BMNT/big.bin"; done | median)
umount "$BMNT"

gib=1.073741824
awk -v h="$hash_t" -v f="$first_t" -v fp="$plain_t" -v fc="$copy_t" -v l="$lazy_t" -v gr="$grow_root_k" -v gp="$grow_plain_k" -v a="$again_t" -v n="$native_t" -v s="$small_t" \
    -v sn="$small_native_t" -v b="$bindfs_t" -v bb="$bindfs_big_t" -v g=$gib -v r="$REPS" -v k=$NSMALL 'BEGIN {
  printf "medians of %d runs, warm page cache (caches not dropped)\n", r
  printf "(a) sha256 of 1 GiB, one core (MultiHasher)   %.3f s  %.2f GB/s\n", h, g/h
  printf "    first open + read, signed chunk root     %.3f s  %.2f GB/s   ratio hash/first = %.2f (target >= 1.2)\n", f, g/f, h/f
  printf "    first open + read, sha256 only (one pass) %.3f s  %.2f GB/s   ratio hash/first = %.2f (target >= 0.95)\n", fp, g/fp, h/fp
  printf "    first open + read, --private-copy         %.3f s  %.2f GB/s   ratio hash/first = %.2f\n", fc, g/fc, h/fc
  printf "    --verify lazy: open + first 4 KiB read    %.1f ms (target <= 20 ms)\n", l*1000
  printf "    state dir growth: %d KiB with a signed root, %d KiB without (%.3f %% of 1 GiB; target <= 1 %%)\n", gr, gp, gp/10485.76
  printf "(b) re-open + read via trustfs                %.3f s  %.2f GB/s\n", a, g/a
  printf "    native read of the backing file           %.3f s  %.2f GB/s   ratio native/trustfs = %.2f (target >= 0.95)\n", n, g/n, n/a
  printf "    bindfs read (for reference)               %.3f s  %.2f GB/s\n", bb, g/bb
  printf "(c) %d x 4 KiB open+read+close, 2nd pass: trustfs %.3f s (%.1f us/file), bindfs %.3f s (%.1f us/file), native %.3f s (%.1f us/file)\n", k, s, s/k*1e6, b, b/k*1e6, sn, sn/k*1e6
  printf "    ratio trustfs/bindfs = %.2f (target <= 0.5)\n", s/b
}'
