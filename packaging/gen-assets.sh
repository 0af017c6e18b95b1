#!/usr/bin/env bash
# Generate man pages and shell completions from the binary into target/assets (for cargo deb).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
T=./target/release/trustfs
out=target/assets
mkdir -p "$out/man" "$out/completions"
$T man >"$out/man/trustfs.1"
for sub in key repo verify mount completions man; do
    $T man "$sub" >"$out/man/trustfs-$sub.1"
done
gzip -9nf "$out"/man/*.1
$T completions bash >"$out/completions/trustfs"
$T completions zsh >"$out/completions/_trustfs"
$T completions fish >"$out/completions/trustfs.fish"
echo "assets in $out"
