#!/usr/bin/env python3
"""Create a small TUF repository with python-tuf's Metadata API.

Usage: make_repo.py OUT_DIR [--meta-hashes] [--key-type ed25519|ecdsa|rsa|mixed]
                   [--succinct-bins BITS [--misbin]]

Writes:
  OUT_DIR/metadata/{1.root.json,root.json,1.targets.json,1.snapshot.json,timestamp.json}
  OUT_DIR/content/   the targets under their plain names (hello.txt, sub/dir/data.bin, ...)
  OUT_DIR/targets/   the same bytes under consistent-snapshot names, python-tuf style:
                     the sha256 is prefixed to the basename, e.g. sub/dir/<sha256>.data.bin
  OUT_DIR/keys/      the four ed25519 private keys (PKCS#8 PEM) and public keys (TUF JSON),
                     so tests can re-sign metadata if they need to.

One fresh key per top-level role (ed25519 by default; --key-type ecdsa gives
ecdsa-sha2-nistp256 keys, rsa gives rsassa-pss-sha256 keys, mixed gives each role another type),
threshold 1, consistent snapshots on, 30 day expiry,
sha256 target hashes. With --meta-hashes, snapshot and timestamp also record length and sha256
of the metadata they point to (optional in the spec; off by default like python-tuf's examples).

With --succinct-bins BITS, python-tuf's succinct hash bin API (TAP 15) does the layout: targets
lists no files and delegates to 2^BITS bins `delegated_bin-<hex>` (SuccinctRoles), each a
Targets role at version 1 signed by one more ed25519 key (keys/bins), all listed in snapshot;
40 more files (many/file-NN.txt) are added so bins are not all empty, and each target goes into
the bin get_role_for_target names. --misbin then also lists one target (sub/dir/data.bin, with
other bytes) in the bin after its own: a bin vouching outside its range, which clients must ignore.
Touches no network.
"""

import argparse
import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Delegations,
    MetaFile,
    Metadata,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)

# Target path -> bytes. A subdirectory target and an empty file are the interesting cases.
CONTENT = {
    "hello.txt": b"hello from python-tuf\n",
    "sub/dir/data.bin": bytes(range(256)) * 16,
    "empty.txt": b"",
}


def meta_file(version: int, path: Path, with_hashes: bool) -> MetaFile:
    if not with_hashes:
        return MetaFile(version=version)
    data = path.read_bytes()
    return MetaFile(
        version=version,
        length=len(data),
        hashes={"sha256": hashlib.sha256(data).hexdigest()},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--meta-hashes", action="store_true")
    parser.add_argument("--key-type", default="ed25519", choices=["ed25519", "ecdsa", "rsa", "mixed"])
    parser.add_argument("--succinct-bins", type=int, metavar="BITS")
    parser.add_argument("--misbin", action="store_true")
    args = parser.parse_args()
    if args.misbin and not args.succinct_bins:
        parser.error("--misbin needs --succinct-bins")

    out: Path = args.out_dir
    metadata_dir, content_dir, targets_dir, keys_dir = (
        out / "metadata",
        out / "content",
        out / "targets",
        out / "keys",
    )
    for d in (metadata_dir, content_dir, targets_dir, keys_dir):
        d.mkdir(parents=True, exist_ok=True)

    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
    generate = {
        "ed25519": CryptoSigner.generate_ed25519,
        "ecdsa": CryptoSigner.generate_ecdsa,
        "rsa": CryptoSigner.generate_rsa,
    }
    if args.key_type == "mixed":
        kinds = dict(zip(ROLES, ["ecdsa", "rsa", "ed25519", "ecdsa"]))
    else:
        kinds = {role: args.key_type for role in ROLES}
    signers = {role: generate[kinds[role]]() for role in ROLES}
    for role, signer in signers.items():
        key_path = keys_dir / role
        key_path.write_bytes(signer.private_bytes)
        os.chmod(key_path, 0o600)
        (keys_dir / f"{role}.pub").write_text(
            json.dumps(signer.public_key.to_dict(), indent=1, sort_keys=True) + "\n"
        )

    pretty = JSONSerializer(compact=False)

    def write(md: Metadata, name: str) -> Path:
        md.sign(signers[md.signed.type])
        path = metadata_dir / name
        md.to_file(str(path), serializer=pretty)
        return path

    # root
    root = Root(expires=expires, consistent_snapshot=True)
    for role in ROLES:
        root.add_key(signers[role].public_key, role)
    root_path = write(Metadata(root), "1.root.json")
    (metadata_dir / "root.json").write_bytes(root_path.read_bytes())

    content = dict(CONTENT)
    if args.succinct_bins:
        for i in range(40):
            content[f"many/file-{i:02d}.txt"] = f"file {i}\n".encode()

    # content and targets
    targets = Targets(version=1, expires=expires)
    for target_path, data in content.items():
        plain = content_dir / target_path
        plain.parent.mkdir(parents=True, exist_ok=True)
        plain.write_bytes(data)
        info = TargetFile.from_file(target_path, str(plain), ["sha256"])
        targets.targets[target_path] = info
        dirname, sep, basename = target_path.rpartition("/")
        served = targets_dir / f"{dirname}{sep}{info.hashes['sha256']}.{basename}"
        served.parent.mkdir(parents=True, exist_ok=True)
        served.write_bytes(data)

    bin_paths = {}
    if args.succinct_bins:
        # python-tuf's succinct hash bin API: the delegation, then every bin, each target in the
        # bin get_role_for_target names.
        bins_signer = CryptoSigner.generate_ed25519()
        (keys_dir / "bins").write_bytes(bins_signer.private_bytes)
        os.chmod(keys_dir / "bins", 0o600)
        succinct = SuccinctRoles(
            keyids=[], threshold=1, bit_length=args.succinct_bins, name_prefix="delegated_bin"
        )
        targets.delegations = Delegations(keys={}, succinct_roles=succinct)
        targets.add_key(bins_signer.public_key)
        bins = {name: Targets(version=1, expires=expires) for name in succinct.get_roles()}
        for target_path, info in targets.targets.items():
            bins[succinct.get_role_for_target(target_path)].targets[target_path] = info
        targets.targets = {}
        if args.misbin:
            victim = "sub/dir/data.bin"
            own = succinct.get_role_for_target(victim)
            names = list(succinct.get_roles())
            other = names[(names.index(own) + 1) % len(names)]
            evil = TargetFile.from_data(victim, b"not the signed data", ["sha256"])
            bins[other].targets[victim] = evil
        for name, bin_targets in bins.items():
            md = Metadata(bin_targets)
            md.sign(bins_signer)
            path = metadata_dir / f"1.{name}.json"
            md.to_file(str(path), serializer=pretty)
            bin_paths[name] = path
    targets_path = write(Metadata(targets), "1.targets.json")

    # snapshot and timestamp
    snapshot = Snapshot(version=1, expires=expires)
    snapshot.meta["targets.json"] = meta_file(1, targets_path, args.meta_hashes)
    for name, path in bin_paths.items():
        snapshot.meta[f"{name}.json"] = meta_file(1, path, args.meta_hashes)
    snapshot_path = write(Metadata(snapshot), "1.snapshot.json")

    timestamp = Timestamp(version=1, expires=expires)
    timestamp.snapshot_meta = meta_file(1, snapshot_path, args.meta_hashes)
    write(Metadata(timestamp), "timestamp.json")

    for target_path in content:
        print(target_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
