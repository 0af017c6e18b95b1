#!/usr/bin/env bash
# Remote mount benchmark (not a test): cold and warm reads of a 1 GiB target served by nginx on
# loopback, in ONE run, alternating. See docs/remote.md.
#
#   bench/remote-bench.sh [REPS]      (root, /dev/fuse, /usr/sbin/nginx, curl)
#
# (a) cold: first read through a fresh `trustfs mount --metadata-url ...` with an empty cache
#     (download + streaming check against the signed chunk root, BLAKE3, or else sha256 + write +
#     fsync + rename, then the read via passthrough), vs
#     `curl -o FILE` of the same URL.                                Target: curl / trustfs >= 0.7
# (b) warm: the same file read again through the mount (cache hit, passthrough), vs a native read
#     of the cached object file.                                     Target: native / trustfs >= 0.9
# (c) lazy cold: the first sequential read through a fresh `--verify lazy` mount with an empty
#     cache (range requests, every 64 KiB chunk checked against the signed chunk tree), vs the
#     same `curl -o FILE`.                                           Target: curl / lazy >= 0.95
# (d) lazy partial: 1 MiB read at offset 512 MiB through a fresh `--verify lazy` mount: bytes
#     nginx sent in all (metadata, outboard, ranges).                Target: <= 8 MiB
# Medians of REPS runs (default 5). Page caches are not dropped (loopback, warm server side).
set -euo pipefail
REPS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=${TRUSTFS_BENCH_DIR:-/var/tmp/trustfs-remote-bench}
BIN=$ROOT/target/release/trustfs
MNT=$W/mnt

(cd "$ROOT" && cargo build --release --quiet)
mkdir -p "$W/content" "$MNT"
if [ ! -f "$W/content/big.bin" ] || [ "$(stat -c %s "$W/content/big.bin")" != 1073741824 ]; then
    head -c 1073741824 /dev/urandom > "$W/content/big.bin"
fi
if [ ! -f "$W/repo/metadata/timestamp.json" ]; then
    rm -rf "$W/repo" "$W/keys"
    "$BIN" repo init "$W/repo" --keys "$W/keys" >/dev/null
    "$BIN" repo add "$W/repo" "$W/content" --keys "$W/keys" >/dev/null
fi
SHA=$(sha256sum "$W/content/big.bin" | cut -d' ' -f1)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $W/nginx/nginx.pid; error_log $W/nginx/error.log;
events { worker_connections 64; }
http { log_format sent '\$bytes_sent'; access_log $W/nginx/access.log sent;
  sendfile on; default_type application/octet-stream;
  client_body_temp_path $W/nginx/body; proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fcgi; uwsgi_temp_path $W/nginx/uwsgi; scgi_temp_path $W/nginx/scgi;
  server { listen 127.0.0.1:$PORT; root $W/repo; } }
CONF
/usr/sbin/nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
NGINX=$!
DAEMON=
cleanup() {
    [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    umount -l "$MNT" 2>/dev/null || true
    kill "$NGINX" 2>/dev/null || true
    rm -f "$W/curl.out"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break || sleep 0.05; done
URL=http://127.0.0.1:$PORT/targets/$SHA.big.bin

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# A fresh mount with an empty cache; extra options after the mountpoint.
start_mount() {
    rm -rf "$W/cache" "$W/state"
    "$BIN" mount --root "$W/repo/metadata/1.root.json" --metadata-url "http://127.0.0.1:$PORT/metadata" \
        --targets-url "http://127.0.0.1:$PORT/targets" --cache "$W/cache" --state-dir "$W/state" "$MNT" \
        "$@" 2>>"$W/daemon.log" &
    DAEMON=$!
    for _ in $(seq 500); do mountpoint -q "$MNT" && break || sleep 0.02; done
}
stop_mount() { kill "$DAEMON"; wait "$DAEMON" || true; DAEMON=; }
# Bytes nginx sent since the last call (its log settles first: a line is written after the send).
sent() {
    local n=-1 m
    for _ in $(seq 50); do
        m=$(wc -l < "$W/nginx/access.log")
        [ "$m" = "$n" ] && break
        n=$m; sleep 0.1
    done
    awk '{s += $1} END {print s + 0}' "$W/nginx/access.log"
    : > "$W/nginx/access.log"
}

: > "$W/curlnull.t"; : > "$W/curl.t"; : > "$W/cold.t"; : > "$W/warm.t"; : > "$W/native.t"
: > "$W/lazy.t"; : > "$W/partial.b"
for i in $(seq "$REPS"); do
    t0=$(now); curl -s -o "$W/curl.out" "$URL"; t1=$(now)
    echo "$t1 - $t0" | bc >> "$W/curl.t"
    rm -f "$W/curl.out"
    t0=$(now); curl -s -o /dev/null "$URL"; t1=$(now)
    echo "$t1 - $t0" | bc >> "$W/curlnull.t"

    start_mount
    t0=$(now); cat "$MNT/big.bin" > /dev/null; t1=$(now)
    echo "$t1 - $t0" | bc >> "$W/cold.t"
    t0=$(now); cat "$MNT/big.bin" > /dev/null; t1=$(now)
    echo "$t1 - $t0" | bc >> "$W/warm.t"
    OBJ=$(ls "$W"/cache/t-*)
    t0=$(now); cat "$OBJ" > /dev/null; t1=$(now)
    echo "$t1 - $t0" | bc >> "$W/native.t"
    stop_mount

    start_mount --verify lazy
    t0=$(now); cat "$MNT/big.bin" > /dev/null; t1=$(now)
    echo "$t1 - $t0" | bc >> "$W/lazy.t"
    cmp -s "$MNT/big.bin" "$W/content/big.bin" || { echo "lazy read differs" >&2; exit 1; }
    stop_mount

    sent > /dev/null
    start_mount --verify lazy
    dd if="$MNT/big.bin" of=/dev/null bs=1M skip=512 count=1 status=none
    stop_mount
    sent >> "$W/partial.b"
done

CURLNULL=$(median < "$W/curlnull.t"); CURL=$(median < "$W/curl.t"); COLD=$(median < "$W/cold.t")
WARM=$(median < "$W/warm.t"); NATIVE=$(median < "$W/native.t"); LAZY=$(median < "$W/lazy.t")
PARTIAL=$(median < "$W/partial.b")
gbs() { echo "scale=2; 1.073741824 / $1" | bc; }
echo "1 GiB target from nginx on 127.0.0.1, medians of $REPS runs"
printf '(a) curl -o FILE                     %6.3f s  %s GB/s\n' "$CURL" "$(gbs "$CURL")"
printf '    curl -o /dev/null (reference)    %6.3f s  %s GB/s\n' "$CURLNULL" "$(gbs "$CURLNULL")"
printf '    trustfs cold read (fetch+verify) %6.3f s  %s GB/s   ratio curl/trustfs = %s (target >= 0.7)\n' \
    "$COLD" "$(gbs "$COLD")" "$(echo "scale=2; $CURL / $COLD" | bc)"
printf '(b) native read of the cached object %6.3f s  %s GB/s\n' "$NATIVE" "$(gbs "$NATIVE")"
printf '    trustfs warm read (passthrough)  %6.3f s  %s GB/s   ratio native/trustfs = %s (target >= 0.9)\n' \
    "$WARM" "$(gbs "$WARM")" "$(echo "scale=2; $NATIVE / $WARM" | bc)"
printf '(c) trustfs --verify lazy cold read %6.3f s  %s GB/s   ratio curl/lazy = %s (target >= 0.95)\n' \
    "$LAZY" "$(gbs "$LAZY")" "$(echo "scale=2; $CURL / $LAZY" | bc)"
printf '(d) --verify lazy 1 MiB at 512 MiB   %6.2f MiB sent by nginx in all (target <= 8 MiB)\n' \
    "$(echo "scale=2; $PARTIAL / 1048576" | bc)"
