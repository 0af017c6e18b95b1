#!/usr/bin/env bash
# Remote first read of many small files (issue 10), not a test: N files of 4 KiB (default 10,000)
# in directories of 1,000, published with `trustfs repo`, served by nginx on 127.0.0.1. In ONE run
# and on the same files, alternating, REPS times:
#
#   (k) a keep-alive HTTP client (python http.client, one connection) fetching every file under
#       its consistent-snapshot name and writing it to a file of its own (no hashing);
#   (t) the first read (`open` + `read` + `close` of every file, in directory order, by one
#       process) through a fresh `trustfs mount --metadata-url ...` with an empty cache.
#
# Reports the medians, the ratio t/k (issue 10's goal: <= 2) and the time per file of each block
# of 1,000 files (the goal: flat as the cache grows). Also run with N=100000 for the 100,000-object
# end of the issue's goal.
#
#   bench/remote-first-read.sh [N] [REPS]      (root, /dev/fuse, /usr/sbin/nginx, python3)
#
# Environment: RFR_DIR (work dir, default /var/tmp/trustfs-remote-first-read; content and
# repository are kept between runs of the same N), TRUSTFS_BIN (a trustfs binary instead of
# target/release/trustfs), MOUNT_ARGS (extra `trustfs mount` options, e.g. "--prefetch 0").
set -euo pipefail
N=${1:-10000}
REPS=${2:-3}
W=${RFR_DIR:-/var/tmp/trustfs-remote-first-read}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "remote-first-read.sh: needs root (FUSE mounts)" >&2; exit 1; }
if [ -z "${TRUSTFS_BIN:-}" ]; then
    cargo build --release --quiet
    T=$PWD/target/release/trustfs
else
    T=$TRUSTFS_BIN
fi
CONTENT=$W/content-$N REPO=$W/repo-$N KEYS=$W/keys MNT=$W/mnt
DAEMON= NGINX=
RUN=$W/run
cleanup() {
    [ -n "$DAEMON" ] && kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
    mountpoint -q "$MNT" 2>/dev/null && umount -l "$MNT"
    [ -n "$NGINX" ] && kill "$NGINX" 2>/dev/null && wait "$NGINX" 2>/dev/null
    # Removed at the end, not before each pass: on ext4 without a journal, creating files right
    # after deleting thousands scans the recently deleted inodes (recently_deleted()) and would
    # slow whichever side comes next.
    rm -rf "$RUN"
    true
}
trap cleanup EXIT
rm -rf "$RUN"
mkdir -p "$W" "$MNT" "$RUN"

if [ ! -f "$REPO/.complete" ]; then
    rm -rf "$CONTENT" "$REPO" "$KEYS"
    python3 - "$CONTENT" "$N" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 1000:04d}")
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % 1000:03d}"), "wb") as f:
        f.write(os.urandom(4096))
PY
    sleep 3
    "$T" repo init "$REPO" --keys "$KEYS" >/dev/null 2>&1
    "$T" repo add "$REPO" "$CONTENT" --keys "$KEYS" >/dev/null 2>&1
    touch "$REPO/.complete"
fi
# Relative target paths and their request names (dir/<sha256>.<basename>), in directory order.
python3 - "$CONTENT" > "$W/files.txt" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
for d in sorted(os.listdir(root)):
    for f in sorted(os.listdir(os.path.join(root, d))):
        data = open(os.path.join(root, d, f), "rb").read()
        print(f"{d}/{f} {d}/{hashlib.sha256(data).hexdigest()}.{f}")
PY

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/nginx"
cat > "$W/nginx/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1;
pid $W/nginx/nginx.pid; error_log $W/nginx/error.log;
events { worker_connections 256; }
http { access_log off; sendfile on; default_type application/octet-stream;
  keepalive_requests 1000000; keepalive_timeout 120s;
  client_body_temp_path $W/nginx/body; proxy_temp_path $W/nginx/proxy;
  fastcgi_temp_path $W/nginx/fcgi; uwsgi_temp_path $W/nginx/uwsgi; scgi_temp_path $W/nginx/scgi;
  server { listen 127.0.0.1:$PORT; root $REPO; } }
CONF
/usr/sbin/nginx -c "$W/nginx/nginx.conf" -p "$W/nginx" &
NGINX=$!
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null && break || sleep 0.05; done

echo "trustfs: $("$T" --version); $(nproc) cores; $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tree: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), N=$N, REPS=$REPS, MOUNT_ARGS=${MOUNT_ARGS:-}"

# The keep-alive client: prints total seconds, then seconds per block of 1,000 files.
client() {
    python3 - "$W/files.txt" "$PORT" "$RUN/client.$1" <<'PY'
import http.client, os, sys, time
files, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = [l.split()[1] for l in open(files)]
conn = http.client.HTTPConnection("127.0.0.1", port)
t0 = last = time.monotonic()
blocks = []
for i, name in enumerate(names):
    conn.request("GET", "/targets/" + name)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200 or len(body) != 4096:
        sys.exit(f"{name}: HTTP {r.status}, {len(body)} bytes")
    d = os.path.join(out, os.path.dirname(name))
    if not os.path.isdir(d):
        os.makedirs(d)
    with open(os.path.join(out, name), "wb") as f:
        f.write(body)
    if (i + 1) % 1000 == 0:
        now = time.monotonic(); blocks.append(now - last); last = now
print(time.monotonic() - t0, *blocks)
PY
}

# The first read through a fresh mount: same output format.
first_read() {
    # shellcheck disable=SC2086
    "$T" mount --root "$REPO/metadata/1.root.json" --metadata-url "http://127.0.0.1:$PORT/metadata" \
        --targets-url "http://127.0.0.1:$PORT/targets" --cache "$RUN/cache.$1" --state-dir "$RUN/state.$1" \
        ${MOUNT_ARGS:-} "$MNT" 2>>"$W/daemon.log" &
    DAEMON=$!
    for _ in $(seq 1000); do mountpoint -q "$MNT" && break || sleep 0.02; done
    python3 - "$W/files.txt" "$MNT" <<'PY'
import os, sys, time
files, mnt = sys.argv[1], sys.argv[2]
paths = [os.path.join(mnt, l.split()[0]) for l in open(files)]
t0 = last = time.monotonic()
blocks = []
for i, p in enumerate(paths):
    with open(p, "rb") as f:
        if len(f.read()) != 4096:
            sys.exit(f"{p}: short read")
    if (i + 1) % 1000 == 0:
        now = time.monotonic(); blocks.append(now - last); last = now
print(time.monotonic() - t0, *blocks)
PY
    sleep 1.2  # the status record is rewritten every 0.5 s
    "$T" status --json "$MNT" > "$W/status.json" 2>/dev/null || true
    python3 - "$W/status.json" >&2 <<'PY' || true
import json, sys
c = json.load(open(sys.argv[1]))[0]["status"]["counters"]
print(f"    daemon: {c['fetches']} fetched by opens, {c.get('prefetch_fetches', 0)} prefetched "
      f"({c.get('prefetch_failures', 0)} failed, {c.get('prefetch_dropped', 0)} dropped), "
      f"{c['cache_hits']} cache hits")
PY
    kill -TERM "$DAEMON"; wait "$DAEMON" 2>/dev/null || true; DAEMON=
}

: > "$W/k.t"; : > "$W/t.t"
for i in $(seq "$REPS"); do
    client "$i" >> "$W/k.t"
    first_read "$i" >> "$W/t.t"
    printf 'rep %d: keep-alive client %.2f s, trustfs first read %.2f s\n' "$i" \
        "$(tail -1 "$W/k.t" | cut -d' ' -f1)" "$(tail -1 "$W/t.t" | cut -d' ' -f1)"
done
python3 - "$W/k.t" "$W/t.t" "$N" <<'PY'
import statistics, sys
def load(p):
    return [list(map(float, l.split())) for l in open(p) if l.strip()]
k, t, n = load(sys.argv[1]), load(sys.argv[2]), int(sys.argv[3])
med = lambda rows, j: statistics.median(r[j] for r in rows)
mk, mt = med(k, 0), med(t, 0)
print(f"{n} x 4 KiB from nginx on 127.0.0.1, medians of {len(k)} runs")
print(f"(k) keep-alive client (1 connection), fetch + write  {mk:7.2f} s  {mk / n * 1e6:7.0f} us/file")
print(f"(t) trustfs first read (empty cache)                 {mt:7.2f} s  {mt / n * 1e6:7.0f} us/file")
print(f"    ratio t/k = {mt / mk:.2f} (issue 10's goal: <= 2)")
blocks = min(len(r) for r in k + t) - 1
if blocks > 0:
    print("    us/file per block of 1,000 files (median), k | t:")
    print("    " + " ".join(f"{med(k, j) * 1e3:.0f}" for j in range(1, blocks + 1)))
    print("    " + " ".join(f"{med(t, j) * 1e3:.0f}" for j in range(1, blocks + 1)))
PY
