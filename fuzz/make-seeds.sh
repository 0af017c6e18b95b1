#!/usr/bin/env bash
# Make raw seed inputs for the fuzz targets from real repositories, into OUT (default
# /tmp/trustfs-fuzz-seeds/<target>/): trustfs-made repositories (the demo keys of examples/keys, so
# the fuzz harness can re-sign them; delegations by paths, hash bins, threshold 2, nesting),
# python-tuf-made ones (ed25519, ecdsa, rsa, mixed; with and without meta hashes) if a python with
# tests/interop/requirements.txt is given in TRUSTFS_PYTHON, and hand-written inputs for the small
# targets. The committed corpus is these seeds after `cargo fuzz cmin` (see fuzz/README.md).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
OUT="${1:-/tmp/trustfs-fuzz-seeds}"
T="${TRUSTFS_BIN:-$REPO/target/release/trustfs}"
PY="${TRUSTFS_PYTHON:-}"
[ -x "$T" ] || (cd "$REPO" && cargo build --release --quiet)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"/{metadata,cjson,target_path,status_record,mountinfo,http} "$work/raw"

# --- trustfs-made repositories, signed with the demo keys ---------------------------------------
keys="$work/keys"
mkdir -p "$keys"
chmod 700 "$keys"
for r in root targets snapshot timestamp; do
    install -m 600 "$REPO/examples/keys/$r" "$keys/$r"
    cp "$REPO/examples/keys/$r.pub" "$keys/$r.pub"
done
# Delegated roles reuse demo keys (fuzz/targets.rs verifies single delegated files against the
# same names and keys): docs = targets key, bin-0/bin-8 = snapshot key, pair = root + timestamp.
for pair in docs:targets guide:targets bin-0:snapshot bin-8:snapshot pair:root pair@2:timestamp; do
    install -m 600 "$keys/${pair#*:}" "$keys/${pair%%:*}"
    cp "$keys/${pair#*:}.pub" "$keys/${pair%%:*}.pub"
done
long=(--expires root=3650d --expires targets=3650d --expires snapshot=3650d --expires timestamp=3650d)

r1="$work/repo-plain"
c1="$work/content-plain"
mkdir -p "$c1/dir/sub" "$c1/with space" "$c1/ünïcödé"
printf 'hello\n' >"$c1/hello.txt"
printf '' >"$c1/empty"
head -c 3000 /dev/zero | tr '\0' 'x' >"$c1/dir/sub/big.bin"
printf 'a b\n' >"$c1/with space/file name.txt"
printf 'u\n' >"$c1/ünïcödé/ñ.txt"
"$T" repo init "$r1" --keys "$keys" "${long[@]}" >/dev/null
"$T" repo add "$r1" "$c1" --keys "$keys" "${long[@]}" >/dev/null
"$T" repo add "$r1" "$c1" --keys "$keys" --sha512 "${long[@]}" >/dev/null

r2="$work/repo-deleg"
"$T" repo init "$r2" --keys "$keys" "${long[@]}" >/dev/null
c2="$work/content-top"
mkdir -p "$c2"
printf 'top\n' >"$c2/top.txt"
"$T" repo add "$r2" "$c2" --keys "$keys" "${long[@]}" >/dev/null
"$T" repo delegate "$r2" --keys "$keys" --role docs --path 'docs/*' --path '*.md' "${long[@]}" --expires docs=3650d >/dev/null
"$T" repo delegate "$r2" --keys "$keys" --role bin-0 $(printf -- '--hash-prefix %x ' 0 1 2 3 4 5 6 7) "${long[@]}" --expires bin-0=3650d >/dev/null
"$T" repo delegate "$r2" --keys "$keys" --role bin-8 $(printf -- '--hash-prefix %x ' 8 9 10 11 12 13 14 15) "${long[@]}" --expires bin-8=3650d >/dev/null
"$T" repo delegate "$r2" --keys "$keys" --role pair --path 'release/*' --threshold 2 --terminating \
    --key "$keys/root.pub" --key "$keys/timestamp.pub" "${long[@]}" --expires pair=3650d >/dev/null
"$T" repo delegate "$r2" --keys "$keys" --role guide --delegator docs --path 'docs/guide*' "${long[@]}" --expires guide=3650d >/dev/null
cd2="$work/content-docs"
mkdir -p "$cd2/docs"
printf '# readme\n' >"$cd2/README.md"
printf 'intro\n' >"$cd2/docs/intro.txt"
"$T" repo add "$r2" "$cd2" --keys "$keys" --role docs "${long[@]}" >/dev/null
cg="$work/content-guide"
mkdir -p "$cg/docs"
printf 'guide\n' >"$cg/docs/guide.md"
"$T" repo add "$r2" "$cg" --keys "$keys" --role guide "${long[@]}" >/dev/null
cr="$work/content-release"
mkdir -p "$cr/release"
printf 'v1\n' >"$cr/release/v1.tar"
"$T" repo add "$r2" "$cr" --keys "$keys" --role pair "${long[@]}" >/dev/null
# Hash bins: each bin gets the files whose sha256(path) falls in it.
for bin in bin-0 bin-8; do
    cb="$work/content-$bin"
    mkdir -p "$cb/pkg"
    for i in $(seq 1 12); do
        p="pkg/file$i.bin"
        h=$(printf '%s' "$p" | sha256sum | cut -c1)
        case "$bin:$h" in
        bin-0:[0-7] | bin-8:[89a-f]) printf '%s\n' "$i" >"$cb/$p" ;;
        esac
    done
    "$T" repo add "$r2" "$cb" --keys "$keys" --role "$bin" "${long[@]}" >/dev/null
done

# Succinct hash bins (TAP 15): 4 bins, forced (the bins key is generated into $keys).
r3="$work/repo-bins"
c3="$work/content-bins"
mkdir -p "$c3/sub"
for i in $(seq 1 12); do printf 'binned %s\n' "$i" >"$c3/sub/f$i.txt"; done
"$T" repo init "$r3" --keys "$keys" "${long[@]}" >/dev/null
"$T" repo add "$r3" "$c3" --keys "$keys" --bins 4 "${long[@]}" >/dev/null

# --- python-tuf-made repositories -----------------------------------------------------------------
py_repos=()
if [ -n "$PY" ]; then
    for kt in ed25519 ecdsa rsa mixed; do
        for mh in "" --meta-hashes; do
            d="$work/py-$kt${mh:+-hashes}"
            "$PY" "$REPO/tests/interop/make_repo.py" "$d" --key-type "$kt" $mh >/dev/null
            py_repos+=("$d")
        done
    done
    # python-tuf's succinct hash bin API, and a bin vouching outside its range.
    for extra in "" --misbin; do
        d="$work/py-bins${extra}"
        "$PY" "$REPO/tests/interop/make_repo.py" "$d" --succinct-bins 3 $extra >/dev/null
        py_repos+=("$d")
    done
fi

# --- assemble ----------------------------------------------------------------------------------
python3 - "$OUT" "$REPO" "$r1" "$r2" "$r3" "${py_repos[@]}" <<'PY'
import datetime, hashlib, json, os, re, sys
out, repo, r1, r2, r3, *py = sys.argv[1:]
count = [0]
def put(target, data, tag):
    if isinstance(data, str):
        data = data.encode()
    count[0] += 1
    h = hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(out, target, f"{tag}-{h}"), "wb") as f:
        f.write(data)

def files(d):
    md = os.path.join(d, "metadata")
    return {f: open(os.path.join(md, f), "rb").read() for f in sorted(os.listdir(md))}

def kind(name, data):
    t = json.loads(data)["signed"]["_type"]
    role = re.sub(r"^\d+\.", "", name)[: -len(".json")]
    if t == "targets" and role != "targets":
        return "4"
    return {"root": "0", "targets": "1", "snapshot": "2", "timestamp": "3"}[t]

def latest(fs, role):
    best = None
    for f in fs:
        m = re.fullmatch(r"(\d+)\." + re.escape(role) + r"\.json", f)
        if m and (best is None or int(m.group(1)) > int(best.group(1))):
            best = m
    return best.group(0) if best else None

def bundle(sections):
    """Mode 5: `--- NAME\\n` + bytes sections (the file bytes exactly), '\\n' between."""
    return b"5" + b"\n".join(b"--- " + n.encode() + b"\n" + d for n, d in sections)

def repo_sections(fs, sign=(), extra=()):
    roles = sorted({re.sub(r"^\d+\.", "", f)[:-5] for f in fs} - {"root", "timestamp"})
    secs = []
    for role in roles:
        f = latest(fs, role) or (role + ".json" if role + ".json" in fs else None)
        if f:
            secs.append(f)
    secs.append("timestamp.json")
    return [(("!" if f in sign else "") + f, fs[f]) for f in secs] + list(extra)

example = files(os.path.join(repo, "examples", "repo"))
for name, src in [("example", example), ("plain", files(r1)), ("deleg", files(r2)), ("bins", files(r3))]:
    for f, d in src.items():
        put("metadata", kind(f, d).encode() + d, f"{name}-single")
        put("cjson", json.dumps(json.loads(d)["signed"]), f"{name}-signed")
    secs = repo_sections(src)
    put("metadata", bundle(secs), f"{name}-repo")
    # The same repository, every file re-signed by the harness.
    put("metadata", bundle([("!" + n if not n.startswith("!") else n, d) for n, d in secs]), f"{name}-repo-resigned")
    if name == "deleg":
        # A delegated role's file also as a top-level targets file and vice versa.
        for f, d in src.items():
            if re.fullmatch(r"\d+\.targets\.json", f):
                put("metadata", b"4" + d, "deleg-top-as-delegated")

deleg = files(r2)
base = repo_sections(deleg)
# Root rotation: 2.root.json = 1.root.json with version 2 (and, in a second seed, 3.root.json too),
# signed by the harness with the demo root key.
root1 = json.loads(deleg["1.root.json"])
def root_v(v, **changes):
    r = json.loads(json.dumps(root1))
    r["signed"]["version"] = v
    r["signed"].update(changes)
    return json.dumps(r, indent=1).encode()
put("metadata", bundle([("pin", deleg["1.root.json"]), ("!2.root.json", root_v(2))] + base), "rotate")
put("metadata", bundle([("!2.root.json", root_v(2)), ("!3.root.json", root_v(3))] + base), "rotate2")
# Consistent snapshots off: unversioned names, everything re-signed by the harness.
nc = []
for n, d in base:
    nc.append(("!" + re.sub(r"^\d+\.", "", n), d))
put("metadata", bundle([("!pin", root_v(1, consistent_snapshot=False))] + nc), "not-consistent")
# Timestamp and snapshot with lengths and hashes, fixed up by the harness.
fixed = []
for n, d in base:
    v = json.loads(d)
    if v["signed"]["_type"] in ("snapshot", "timestamp"):
        for e in v["signed"]["meta"].values():
            e["length"] = 0
            e["hashes"] = {"sha256": "00", "sha512": "00"}
    fixed.append(("!" + n, json.dumps(v, indent=1).encode()))
put("metadata", bundle(fixed), "meta-hashes")
# A fetch that fails, and a role missing.
put("metadata", bundle([("?" + n if "bin-8" in n else n, d) for n, d in base]), "io-error")
put("metadata", bundle([(n, d) for n, d in base if "pair" not in n]), "missing-role")
put("metadata", bundle(base + [("now", b"2040-01-01T00:00:00Z")]), "expired")

for d in py:
    fs = files(d)
    # make_repo.py gives 30 days; run the client a day after it made the repository.
    exp = json.loads(fs["1.root.json"])["signed"]["expires"]
    t = datetime.datetime.strptime(exp, "%Y-%m-%dT%H:%M:%SZ") - datetime.timedelta(days=29)
    now = t.strftime("%Y-%m-%dT%H:%M:%SZ").encode()
    tag = "py-" + os.path.basename(d).removeprefix("py-")
    secs = [("pin", fs["1.root.json"]), ("now", now)] + repo_sections(
        {k: v for k, v in fs.items() if k != "root.json"})
    put("metadata", bundle(secs), tag + "-repo")
    for f, data in fs.items():
        if f != "root.json":
            put("metadata", kind(f, data).encode() + data, tag + "-single")
    put("cjson", json.dumps(json.loads(fs["1.root.json"])["signed"], indent=2), tag + "-root")

# --- cjson: hand-written ---------------------------------------------------------------------
for i, s in enumerate([
    '{"b": 1, "a": [true, null, -3], "B": {}}',
    '{"public": "-----BEGIN PUBLIC KEY-----\\nMFkw\\n-----END PUBLIC KEY-----\\n"}',
    '{"\\ud83d\\ude00": 3, "\\u00e9": 2, "z": 1, "\\u00e8": 0}',
    '[18446744073709551615, -9223372036854775808, 0, 1.5]',
    '{"k": "\\u0041\\/\\n\\t\\u0001\\"\\\\"}',
    '[[[[[[[[[[[[[[[[[[[[{"deep": [[[]]]}]]]]]]]]]]]]]]]]]]]]',
    '"plain"', 'null', '-0', '1e2', '{"a":1,"a":2}',
]):
    put("cjson", s, f"hand{i}")

# --- target_path: hand-written ---------------------------------------------------------------
for i, s in enumerate([
    "a", "dir/file.txt", "", "/etc/passwd", "a\0b", "a//b", "a/", "./a", "a/../b", "..",
    "..hidden", "with space/ünïcödé.txt", "a\\b", "x" * 300, "d/" * 2100 + "f",
    "docs/*\ndocs/a.md", "*.md\nREADME.md", "file[0-9].bin\nfile7.bin", "file[!0-9].bin\nfilex.bin",
    "a?c\na/c", "0\nfile.txt", "aa\nfile.txt", "AAD\nfile.txt", "8e\npkg/a.bin", "AbC\nx", "\nx", "dir/*/a.tx?\ndir/sub/a.txt",
    "[\n[", "[]a]\n]",
]):
    put("target_path", s, f"hand{i}")

# --- status_record: hand-written (the fields of telemetry::status::MountStatus) --------------------
def status(**over):
    s = {
        "pid": 1, "mountpoint": "/mnt/trusted", "repository": "/srv/repo/metadata",
        "content": "/srv/content", "started": "2026-12-31T23:00:00Z",
        "updated": "2026-12-31T23:59:50Z", "updated_unix": 1798761590, "verified": True,
        "problem": None,
        "metadata": {
            "root_version": 1, "root_expires": "2036-11-25T10:19:50Z",
            "timestamp_version": 2, "timestamp_expires": "2027-01-02T00:00:00Z",
            "snapshot_version": 2, "snapshot_expires": "2027-01-08T00:00:00Z",
            "targets_version": 2, "targets_expires": "2027-04-01T00:00:00Z",
            "consistent_snapshot": True, "source": "/srv/repo/metadata",
            "keys": {"root": {"threshold": 1, "keyids": ["e2dc1ed329f0aa3767cce8120c962580bcae88716aff67af50c2dbd695b08fa2"]}},
            "expires": "2027-01-02T00:00:00Z", "expires_role": "timestamp",
        },
        "targets": 4,
        "counters": {
            "opens": 10, "served": 8, "denied": {"unregistered": 1, "altered": 1},
            "bytes_read": 4096, "bytes_opened": 8192, "verifications": 3,
            "verify_seconds": 0.001234, "verify_buckets": [1, 2, 0, 0, 0, 0, 0, 0],
            "cache_hits": 0, "cache_misses": 0, "cache_bytes": 0, "fetches": 0,
            "fetch_failures": 0, "metadata_switches": 0, "refresh_failures": 0,
            "last_denial": "bin/backdoor.sh: unregistered",
        },
    }
    for k, v in over.items():
        if k.startswith("md_"):
            s["metadata"][k[3:]] = v
        else:
            s[k] = v
    return json.dumps(s, indent=2, ensure_ascii=False)
for i, s in enumerate([
    status(),
    status(verified=False, problem="timestamp metadata expired"),
    status(md_timestamp_expires="2026-01-01T00:00:00Z"),
    status(updated_unix=1000),
    status(pid=4194303),
    status(mountpoint="/srv/app data/ü-x"),
    status(md_root_expires="not a time"),
]):
    put("status_record", s, f"hand{i}")
minimal = json.loads(status())
for k in ("fetches", "fetch_failures", "metadata_switches", "refresh_failures"):
    del minimal["counters"][k]
for k in ("keys", "expires", "expires_role"):
    del minimal["metadata"][k]
put("status_record", json.dumps(minimal), "minimal")

# --- mountinfo ----------------------------------------------------------------------------------
real = open("/proc/self/mountinfo").read()
put("mountinfo", real, "proc-self")
lines = [
    "36 25 0:52 / /mnt/trusted rw,nosuid,nodev,relatime shared:190 - fuse.trustfs trustfs rw,user_id=0,group_id=0",
    "37 25 0:53 / /mnt/a\\040b\\134c rw,relatime - fuse trustfs rw,user_id=0,group_id=0",
    "38 25 0:54 / /mnt/other rw - fuse sshfs rw",
    "39 25 0:55 / /mnt/tab\\011nl\\012 rw master:1 shared:2 - fuse.trustfs trustfs rw",
    "40 25 0:56 / /mnt/x - y rw - fuse.trustfs trustfs rw",
    "41 25 0:57 /mnt/end\\04",
]
put("mountinfo", "\n".join(lines) + "\n", "hand")
put("mountinfo", real + "\n".join(lines), "proc-self-plus")
for i, p in enumerate(["/mnt/trusted", "/mnt/with space", "srv/back\\slash", "/a\n- fuse.trustfs trustfs"]):
    put("mountinfo", p, f"point{i}")

# --- http: a limit byte, then the responses (one per connection, "\n=== next\n" between) -------
def http(name, limit, *responses):
    put("http", bytes([limit]) + b"\n=== next\n".join(r.encode() if isinstance(r, str) else r for r in responses), name)
body = '{"signed":{"_type":"timestamp"}}'
ok = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
http("ok", 255, ok)
http("ok-close-delimited", 255, f"HTTP/1.0 200 OK\r\n\r\n{body}")
http("ok-chunked", 255, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
http("chunked-and-length", 255, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
http("too-large-by-length", 16, ok)
http("too-large-by-body", 16, f"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{body}")
http("short-body", 255, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
http("bad-length", 255, "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nabc")
http("two-lengths", 255, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde")
http("not-found", 255, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
http("forbidden", 255, "HTTP/1.1 403 Forbidden\r\n\r\n")
http("server-error", 255, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nno")
http("teapot", 255, "HTTP/1.1 418 I'm a teapot\r\n\r\n")
http("redirect-same-origin", 255, "HTTP/1.1 302 Found\r\nLocation: /dir/other.json\r\nContent-Length: 0\r\n\r\n", ok)
http("redirect-relative", 255, "HTTP/1.1 301 Moved\r\nLocation: moved/file.json\r\n\r\n", ok)
http("redirect-chain", 255, *["HTTP/1.1 307 Temporary\r\nLocation: /a%d\r\n\r\n" % i for i in range(7)])
http("redirect-loop", 255, "HTTP/1.1 308 Permanent\r\nLocation: /dir/file.json\r\n\r\n", ok)
http("redirect-file", 255, "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\n\r\n")
http("redirect-other-host", 255, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:1/x\r\n\r\n")
http("redirect-no-location", 255, "HTTP/1.1 303 See Other\r\n\r\n")
http("redirect-control", 255, "HTTP/1.1 302 Found\r\nLocation: /a\x01b\r\n\r\n")
http("garbage", 255, "\x00\xff garbage \r\n\r\n")
http("empty", 255, "")
http("head-only", 255, "HTTP/1.1 200 OK\r\nContent-Len")
http("long-header", 255, "HTTP/1.1 200 OK\r\nX-Long: " + "a" * 20000 + "\r\n\r\n")
http("many-headers", 255, "HTTP/1.1 200 OK\r\n" + "X-A: b\r\n" * 200 + "\r\n")
http("http09", 255, body)
http("lf-only", 255, f"HTTP/1.1 200 OK\nContent-Length: {len(body)}\n\n{body}")
http("continue", 255, "HTTP/1.1 100 Continue\r\n\r\n" + ok)
http("zero-limit", 0, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
print(f"{count[0]} seeds in {out}")
PY
