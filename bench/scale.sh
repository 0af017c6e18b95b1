#!/usr/bin/env bash
# Scale benchmark: N small files (default 1,000,000) in directories of 1,000, end to end through
# the real binary. Reports (never asserts) what issue 10 asks for:
#   - repo add from scratch: time, max RSS, bins, the largest metadata file;
#   - repo add after changing one file: time, bins signed anew, files not read again;
#   - trustfs verify of the whole tree: time, max RSS;
#   - local mount to serving (empty state dir, and a restart); daemon RSS at start, after a full
#     `find`, after 10,000 random reads and after a find that stats every file (bytes per
#     target); `find` over the mount vs over a bindfs mount of the same tree (and native);
#   - CPU of an idle mount with --refresh-interval 1s over 30 s;
#   - a remote mount of the same repository from nginx on 127.0.0.1: time to serving with an
#     empty state dir and on restart, and the hash bins each fetched.
#
#   bench/scale.sh [N]                      (default 1000000)
#
# Environment: SCALE_DIR (work dir, default /var/tmp/trustfs-scale; the content is kept between
# runs of the same N), TRUSTFS_BIN (a trustfs binary instead of target/release/trustfs),
# SCALE_MOUNT_ONLY=1 (reuse the repository of an earlier run: only the mount figures).
# Needs root, /dev/fuse, bindfs (apt-get install -y bindfs) for the find comparison.
set -euo pipefail
N=${1:-1000000}
W=${SCALE_DIR:-/var/tmp/trustfs-scale}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scale.sh: needs root (FUSE mounts)" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "scale.sh: /dev/fuse is missing" >&2; exit 1; }
if [ -z "${TRUSTFS_BIN:-}" ]; then
    cargo build --release --quiet
    T=$PWD/target/release/trustfs
else
    T=$TRUSTFS_BIN
fi
CONTENT=$W/content-$N REPO=$W/repo KEYS=$W/keys MNT=$W/mnt STATE=$W/state BMNT=$W/bindfs
DAEMON_PID= NGINX_PID=

cleanup() {
    [ -n "$DAEMON_PID" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
    for m in "$MNT" "$BMNT"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
    true
}
trap cleanup EXIT
cleanup
mkdir -p "$W" "$MNT" "$BMNT"

say() { printf '%-44s %s\n' "$1" "$2"; }
# timed OUT CMD...: run CMD (stdout and stderr to OUT) under GNU time; print "<seconds> <max RSS
# KiB>". A failing CMD is not an error here (verify exits 1 on a mismatch).
timed() {
    local out=$1
    shift
    /usr/bin/time -f '%e %M' -o "$W/time.out" "$@" >"$out" 2>&1 || true
    tail -1 "$W/time.out"
}
calc() { python3 -c "print($1)"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo "trustfs: $("$T" --version); $(nproc) cores; $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), N=$N"

if [ ! -f "$CONTENT/.complete" ]; then
    rm -rf "$CONTENT"
    python3 - "$CONTENT" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % 1000:03d}"), "w") as f:
        f.write(f"{i}\n")
PY
    touch "$CONTENT/.complete"
    # Let file times settle (repo add does not remember files changed in the last 2 s).
    sleep 3
fi
rm -f "$CONTENT/.complete"   # not a target; put back at the end
trap 'touch "$CONTENT/.complete"; cleanup' EXIT

rm -rf "$STATE"
if [ -n "${SCALE_MOUNT_ONLY:-}" ] && [ -f "$REPO/metadata/timestamp.json" ]; then
    echo "(SCALE_MOUNT_ONLY: the repository from an earlier run, no add or verify)"
else
rm -rf "$REPO" "$KEYS"
"$T" repo init "$REPO" --keys "$KEYS" >/dev/null 2>&1
read -r secs rss < <(timed "$W/add1.out" "$T" repo add "$REPO" "$CONTENT" --keys "$KEYS")
say "repo add from scratch" "$secs s, max RSS $((rss / 1024)) MiB"
grep -E 'targets \(|hash bins' "$W/add1.out" | sed 's/^/    /'
largest=$(find "$REPO/metadata" -type f -printf '%s %f\n' | sort -n | tail -1)
say "largest metadata file" "$largest bytes"
say "metadata files" "$(find "$REPO/metadata" -type f | wc -l)"

echo "changed" > "$CONTENT/d0000/f000"
read -r secs rss < <(timed "$W/add2.out" "$T" repo add "$REPO" "$CONTENT" --keys "$KEYS")
say "repo add after changing one file" "$secs s, max RSS $((rss / 1024)) MiB"
grep -E 'targets \(|not read again' "$W/add2.out" | sed 's/^/    /'
printf '0\n' > "$CONTENT/d0000/f000"

read -r secs rss < <(timed "$W/verify.out" "$T" verify --root "$REPO/metadata/1.root.json" \
    --metadata "$REPO/metadata" "$CONTENT")
say "trustfs verify (d0000/f000 differs)" "$secs s, max RSS $((rss / 1024)) MiB; $(tail -1 "$W/verify.out")"
fi

# serving LOG MOUNT-ARGS...: `trustfs mount MOUNT-ARGS... MNT` (daemon in DAEMON_PID); sets SECS
# to the time until it serves.
serving() {
    local log=$1 start ready
    shift
    start=$(date +%s.%N)
    "$T" mount --root "$REPO/metadata/1.root.json" "$@" "$MNT" 2> "$log" &
    DAEMON_PID=$!
    until [ -e "$MNT/d0000/f001" ]; do
        kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$log"; exit 1; }
        sleep 0.02
    done
    ready=$(date +%s.%N)
    SECS=$(calc "round($ready - $start, 2)")
}
local_mount() {
    serving "$1" --metadata "$REPO/metadata" --backing "$CONTENT" --state-dir "$STATE" "${@:2}"
}
local_mount "$W/daemon.log" --refresh-interval 1s
say "local mount to serving" "$SECS s"
say "daemon RSS at start" "$(( $(rss_kib $DAEMON_PID) / 1024 )) MiB"
sleep 2
say "daemon RSS 2 s later" "$(( $(rss_kib $DAEMON_PID) / 1024 )) MiB (the metadata parsed at start freed)"
read -r secs _ < <(timed /dev/null find "$MNT" -type f -name 'f9*')
say "find over the mount" "$secs s"
# The kernel keeps the listings it read (FOPEN_CACHE_DIR) while nothing changed.
read -r secs _ < <(timed /dev/null find "$MNT" -type f -name 'f9*')
say "find over the mount, repeated" "$secs s"
r=$(rss_kib $DAEMON_PID)
say "daemon RSS after find" "$((r / 1024)) MiB ($((r * 1024 / N)) bytes/target)"
python3 - "$MNT" "$N" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
random.seed(1)
for _ in range(10000):
    i = random.randrange(n)
    with open(os.path.join(root, f"d{i // 1000:04d}", f"f{i % 1000:03d}"), "rb") as f:
        f.read()
PY
r=$(rss_kib $DAEMON_PID)
say "daemon RSS after 10,000 random reads" "$((r / 1024)) MiB ($((r * 1024 / N)) bytes/target)"
t0=$(cpu_ticks $DAEMON_PID)
sleep 30
t1=$(cpu_ticks $DAEMON_PID)
say "idle CPU, --refresh-interval 1s, 30 s" "$(calc "round(($t1 - $t0) * 100 / $(getconf CLK_TCK) / 30, 1)") % of a core"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=

# Restart with the state dir of the first mount (the saved index stands in for the bins).
local_mount "$W/daemon2.log"
say "local mount to serving, restart" "$SECS s"
read -r secs _ < <(timed /dev/null find "$MNT" -type f -name 'f9*')
say "find over the mount, first after restart" "$secs s"
# The worst case for the inode table: a find that stats every file (a lookup each).
read -r secs _ < <(timed /dev/null find "$MNT" -type f -size -1k)
r=$(rss_kib $DAEMON_PID)
say "daemon RSS after a find that stats all" "$((r / 1024)) MiB ($((r * 1024 / N)) bytes/target; $secs s)"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=

# Remote: the same repository from nginx on 127.0.0.1 (metadata and targets over HTTP).
if [ -x /usr/sbin/nginx ]; then
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mkdir -p "$W/nginx"
    cat > "$W/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $W/nginx/nginx.pid; error_log $W/nginx/error.log;
events { worker_connections 256; }
http { access_log $W/nginx/access.log; sendfile on; default_type application/octet-stream;
  keepalive_requests 1000000; keepalive_timeout 120s;
  client_body_temp_path $W/nginx/body; proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fcgi; uwsgi_temp_path $W/nginx/uwsgi; scgi_temp_path $W/nginx/scgi;
  server { listen 127.0.0.1:$PORT; root $REPO; } }
CONF
    : > "$W/nginx/access.log"
    /usr/sbin/nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
    NGINX_PID=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null && break || sleep 0.05
    done
    remote_mount() {
        serving "$W/rdaemon.log" --metadata-url "http://127.0.0.1:$PORT/metadata" \
            --targets-url "http://127.0.0.1:$PORT/targets" \
            --state-dir "$W/rstate" --cache "$W/rcache"
    }
    rm -rf "$W/rstate" "$W/rcache"
    remote_mount
    say "remote mount to serving, empty state dir" "$SECS s; $(grep -c 'bins-' "$W/nginx/access.log") bin requests"
    kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
    : > "$W/nginx/access.log"
    remote_mount
    say "remote mount to serving, restart" "$SECS s; $(grep -c 'bins-' "$W/nginx/access.log") bin requests"
    kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true; DAEMON_PID=
    kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null || true; NGINX_PID=
fi

read -r secs _ < <(timed /dev/null find "$CONTENT" -type f -name 'f9*')
say "find, native" "$secs s"
if command -v bindfs >/dev/null; then
    bindfs -o ro "$CONTENT" "$BMNT"
    read -r secs _ < <(timed /dev/null find "$BMNT" -type f -name 'f9*')
    say "find over bindfs" "$secs s"
    read -r secs _ < <(timed /dev/null find "$BMNT" -type f -name 'f9*')
    say "find over bindfs, repeated" "$secs s"
    umount -l "$BMNT"
else
    say "find over bindfs" "(bindfs not installed)"
fi
