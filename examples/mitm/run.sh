#!/usr/bin/env bash
# The demonstration trustfs exists for: a man in the middle injects a destructive command into a
# service's script on its way to production over plain HTTP. A plain download runs it; a trustfs
# mount of the same repository, through the same man in the middle, refuses it and keeps serving
# the untouched files.
#
#   sudo examples/mitm/run.sh
#
# Runs as root (FUSE mounts, a mount namespace), everything on 127.0.0.1, and cleans up after
# itself (KEEP=1 keeps the scratch directory). Uses $TRUSTFS, else `trustfs` on PATH, else
# target/release/trustfs of this checkout (built if missing). Needs python3 (the servers),
# curl, and unshare/mount (util-linux). Exit 0 when both outcomes are as shown at the end.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKOUT="$(cd "$HERE/../.." && pwd)"

if [ -t 1 ]; then B=$'\033[1m' R=$'\033[31m' G=$'\033[32m' N=$'\033[0m'; else B="" R="" G="" N=""; fi
STEP=0
step() { STEP=$((STEP + 1)); printf '\n%s── %d. %s%s\n' "$B" "$STEP" "$*" "$N"; }
say() { printf '   %s\n' "$*"; }
run() { printf '   %s$ %s%s\n' "$B" "$*" "$N"; }
indent() { sed 's/^/     /'; }
die() { printf '%smitm demo: %s%s\n' "$R" "$*" "$N" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (FUSE mounts and a mount namespace): sudo $0"
[ -c /dev/fuse ] || die "/dev/fuse is missing (modprobe fuse, or give the container --device /dev/fuse)"
for tool in python3 curl unshare mount; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

if [ -n "${TRUSTFS:-}" ]; then
    :
elif command -v trustfs >/dev/null; then
    TRUSTFS="$(command -v trustfs)"
else
    TRUSTFS="$CHECKOUT/target/release/trustfs"
    if [ ! -x "$TRUSTFS" ]; then
        say "building trustfs (cargo build --release) ..."
        (cd "$CHECKOUT" && cargo build --release --quiet) || die "cargo build --release failed"
    fi
fi
[ -x "$TRUSTFS" ] || die "no trustfs binary at $TRUSTFS"

DEMO="$(mktemp -d /tmp/trustfs-mitm.XXXXXX)"
export TRUSTFS_RUNTIME_DIR="$DEMO/run"
PIDS=()
DAEMON=""
cleanup() {
    local rc=$?
    if [ -n "$DAEMON" ] && kill -0 "$DAEMON" 2>/dev/null; then
        kill -TERM "$DAEMON" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DAEMON" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON" 2>/dev/null || true
    fi
    if grep -qs " $DEMO/mnt " /proc/mounts; then umount -l "$DEMO/mnt" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then
        echo "(kept $DEMO)"
    else
        rm -rf "$DEMO"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait (at most 30 s) for a server to write its port.
port_of() {
    for _ in $(seq 300); do
        [ -s "$1" ] && { cat "$1"; return 0; }
        sleep 0.1
    done
    die "a server did not start (see $DEMO/*.log)"
}

printf '%strustfs: the man-in-the-middle demo%s (scratch dir %s)\n' "$B" "$N" "$DEMO"

# ---------------------------------------------------------------------------------------------
step "The publisher signs a small web service with trustfs repo add"
SERVICE="$DEMO/publisher/content/service"
mkdir -p "$SERVICE" "$DEMO/victim"
cat >"$SERVICE/start.sh" <<'EOF'
#!/bin/sh
# trustfs-demo: service entrypoint
# Starts the demo web service: prints what it would serve.
# Deployed to production from the release repository; operators run it
# from the mounted release tree (for example /mnt/app/service/start.sh).
here=$(dirname "$0")
echo "service: started; serving $(wc -c <"$here/index.html") bytes of index.html, config $(cat "$here/config.json")"
EOF
cat >"$SERVICE/index.html" <<'EOF'
<!doctype html><title>demo service</title><h1>Hello from a verified service</h1>
EOF
echo '{"port": 8080, "workers": 4}' >"$SERVICE/config.json"
echo "customer records - do not delete" >"$DEMO/victim/precious.txt"
run "trustfs repo init repo --keys keys && trustfs repo add repo --keys keys content"
(cd "$DEMO/publisher" && "$TRUSTFS" repo init repo --keys keys && "$TRUSTFS" repo add repo --keys keys content) 2>&1 | indent
say "signed: service/start.sh, service/index.html, service/config.json (targets metadata v2)"
say "a file production must never lose: $DEMO/victim/precious.txt"

# ---------------------------------------------------------------------------------------------
step "A web server serves the repository; a man in the middle sits in front of it"
WWW="$DEMO/www"
mkdir -p "$WWW"
cp -r "$DEMO/publisher/repo" "$WWW/repo"
cp -r "$DEMO/publisher/content" "$WWW/files"
python3 "$HERE/mitm.py" origin "$WWW" "$DEMO/origin.port" 2>"$DEMO/origin.log" &
PIDS+=($!)
ORIGIN="http://127.0.0.1:$(port_of "$DEMO/origin.port")"
python3 "$HERE/mitm.py" proxy "$ORIGIN" "$DEMO/mitm.port" "$DEMO/victim/precious.txt" 2>"$DEMO/mitm.log" &
PIDS+=($!)
MITM="http://127.0.0.1:$(port_of "$DEMO/mitm.port")"
say "origin server:    $ORIGIN  (/repo: TUF metadata and targets; /files: the same files, plain)"
say "man in the middle: $MITM  (rewrites the service's script in transit; passes all else)"
say "production reaches the origin only through $MITM, as through a hostile network."

# ---------------------------------------------------------------------------------------------
step "Without trustfs: a plain curl download through the man in the middle, then run it"
mkdir -p "$DEMO/plain/service"
run "curl -fsS $MITM/files/service/start.sh -o start.sh && sh start.sh"
curl -fsS "$MITM/files/service/start.sh" -o "$DEMO/plain/service/start.sh"
curl -fsS "$MITM/files/service/index.html" -o "$DEMO/plain/service/index.html"
curl -fsS "$MITM/files/service/config.json" -o "$DEMO/plain/service/config.json"
say "the downloaded script:"
sed -n '1,3p' "$DEMO/plain/service/start.sh" | indent
(sh "$DEMO/plain/service/start.sh" 2>&1 || true) | indent
if [ -e "$DEMO/victim/precious.txt" ]; then
    PLAIN="injected code did not run (the man in the middle failed?)"
    PLAIN_OK=0
else
    PLAIN="injected code ran ($DEMO/victim/precious.txt deleted)"
    PLAIN_OK=1
    say "${R}✘ precious.txt is gone: the injected command ran in production.${N}"
fi
echo "customer records - do not delete" >"$DEMO/victim/precious.txt"
say "(precious.txt restored for the next part)"

# ---------------------------------------------------------------------------------------------
step "With trustfs: a remote mount of the same repository through the same man in the middle"
mkdir -p "$DEMO/mnt"
run "trustfs mount --root 1.root.json --metadata-url $MITM/repo/metadata --targets-url $MITM/repo/targets --cache cache --audit-log audit.jsonl --metrics-addr 127.0.0.1:0 mnt"
"$TRUSTFS" mount --root "$DEMO/publisher/repo/metadata/1.root.json" \
    --metadata-url "$MITM/repo/metadata" --targets-url "$MITM/repo/targets" \
    --cache "$DEMO/cache" --state-dir "$DEMO/state" --audit-log "$DEMO/audit.jsonl" \
    --metrics-addr 127.0.0.1:0 "$DEMO/mnt" 2>"$DEMO/trustfs.log" &
DAEMON=$!
for _ in $(seq 600); do
    grep -qs " $DEMO/mnt " /proc/mounts &&
        find "$TRUSTFS_RUNTIME_DIR" -name '*.json' ! -name '*.private.json' -size +0 2>/dev/null | grep -q . && break
    kill -0 "$DAEMON" 2>/dev/null || { cat "$DEMO/trustfs.log" >&2; die "trustfs mount exited"; }
    sleep 0.1
done
grep -qs " $DEMO/mnt " /proc/mounts || { cat "$DEMO/trustfs.log" >&2; die "the mount did not come up"; }
PAGE="$(sed -n 's/.*status page on \(http:[^ ]*\) .*/\1/p' "$DEMO/trustfs.log" | head -n1)"
say "mounted at $DEMO/mnt (the tree comes from the signed metadata):"
(cd "$DEMO/mnt" && find . -mindepth 1 | sort) | indent

# ---------------------------------------------------------------------------------------------
step "Production runs the service in a container (a mount namespace, the verified tree bind-mounted read-only at /mnt/app)"
cat >"$DEMO/container.sh" <<'EOF'
set -u
mount -t tmpfs container-root /mnt
mkdir /mnt/app
mount --bind "$1" /mnt/app
mount -o remount,bind,ro /mnt/app
cd /mnt/app
echo '$ cat /mnt/app/service/index.html'
cat service/index.html
echo '$ cat /mnt/app/service/config.json'
cat service/config.json
echo '$ sh /mnt/app/service/start.sh'
sh /mnt/app/service/start.sh
echo "(exit status $?)"
EOF
CONTAINER_OUT="$(unshare --mount --propagation private --pid --fork --mount-proc sh "$DEMO/container.sh" "$DEMO/mnt" 2>&1 || true)"
printf '%s\n' "$CONTAINER_OUT" | indent
REFUSED=0
SERVED=0
if printf '%s' "$CONTAINER_OUT" | grep -q "start.sh: Permission denied"; then REFUSED=1; fi
if printf '%s' "$CONTAINER_OUT" | grep -q "Hello from a verified service" &&
    printf '%s' "$CONTAINER_OUT" | grep -q '"workers": 4'; then SERVED=1; fi
if [ -e "$DEMO/victim/precious.txt" ]; then
    say "${G}✔ precious.txt is still there: the injected script never reached the container.${N}"
else
    REFUSED=0
    say "${R}✘ precious.txt is gone${N}"
fi

# ---------------------------------------------------------------------------------------------
step "What trustfs said about it"
say "the man in the middle's log:"
grep "INJECTED" "$DEMO/mitm.log" | indent || true
say "the daemon's log:"
grep -E "DENY|ERROR" "$DEMO/trustfs.log" | indent || true
say "the audit record (audit.jsonl):"
grep '"event":"deny"' "$DEMO/audit.jsonl" | head -n1 | python3 -m json.tool | indent || true
# The status record is rewritten every second; let it count the denial.
sleep 1.5
run "trustfs status $DEMO/mnt"
("$TRUSTFS" status "$DEMO/mnt" || true) | indent
if [ -n "$PAGE" ]; then
    say "status page: $PAGE (also ${PAGE}status.json and ${PAGE}badge.svg)"
    curl -fsS "${PAGE}status.json" | python3 -c '
import json, sys
v = json.load(sys.stdin)
c = v["status"]["counters"]
print("status.json: verified=%s, %d opens served, %d denied; last denial: %s %s"
      % (str(v["verified"]).lower(), c["served"], sum(c["denied"].values()),
         c["recent_denials"][0]["path"] if c["recent_denials"] else "-",
         c["recent_denials"][0]["reason"] if c["recent_denials"] else ""))' | indent
    if command -v chromium >/dev/null && [ "${KEEP:-0}" = 1 ]; then
        chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
            --user-data-dir="$DEMO/browser" --window-size=1000,1300 \
            --screenshot="$DEMO/status-page.png" "$PAGE" >/dev/null 2>&1 &&
            say "screenshot of the page: $DEMO/status-page.png"
    fi
fi

# ---------------------------------------------------------------------------------------------
step "Result"
if [ "$REFUSED" = 1 ]; then
    TRUSTED="injected code refused (EACCES)"
else
    TRUSTED="injected code NOT refused"
fi
if [ "$SERVED" = 1 ]; then
    TRUSTED="$TRUSTED; untouched files served (service/index.html, service/config.json)"
else
    TRUSTED="$TRUSTED; untouched files NOT served"
fi
printf '%splain download: %s%s\n' "$R" "$PLAIN" "$N"
printf '%strustfs: %s%s\n' "$G" "$TRUSTED" "$N"
[ "$PLAIN_OK" = 1 ] && [ "$REFUSED" = 1 ] && [ "$SERVED" = 1 ]
