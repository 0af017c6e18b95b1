#!/usr/bin/env python3
"""Download targets from a TUF repository with python-tuf's ngclient.Updater.

Usage: download.py --metadata-url URL --targets-url URL --root ROOT.json --out DIR
                   [--metadata-dir DIR] (--all | TARGET...)

The given root is the trust anchor (passed as `bootstrap`, cached as root.json in a fresh
temporary metadata dir, or in --metadata-dir, which is kept: a later run there starts from the
metadata this one trusted, as a long-lived client does). Runs refresh(), then get_targetinfo() and download_target() for each
TARGET, or with --all for every target listed in the top-level targets metadata. Each target is
written to DIR/<target path>; each written path is printed on its own line.
Exits 0 on success; 1 with the error on stderr if anything fails (untrusted metadata, unknown
target, hash mismatch, HTTP error). Meant for 127.0.0.1 test servers only.
"""

import argparse
import sys
import tempfile
from pathlib import Path

from tuf.api.metadata import Metadata, Targets
from tuf.ngclient import Updater


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metadata-url", required=True)
    parser.add_argument("--targets-url", required=True)
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--metadata-dir", type=Path, help="keep trusted metadata here")
    parser.add_argument("--all", action="store_true", help="download every top-level target")
    parser.add_argument("targets", nargs="*")
    args = parser.parse_args()
    if not args.all and not args.targets:
        parser.error("give TARGET paths or --all")

    try:
        with tempfile.TemporaryDirectory(prefix="tuf-client-") as metadata_dir:
            if args.metadata_dir is not None:
                args.metadata_dir.mkdir(parents=True, exist_ok=True)
                metadata_dir = str(args.metadata_dir)
            updater = Updater(
                metadata_dir=metadata_dir,
                metadata_base_url=args.metadata_url,
                target_base_url=args.targets_url,
                bootstrap=args.root.read_bytes(),
            )
            updater.refresh()

            names = list(args.targets)
            if args.all:
                # refresh() verified the top-level targets role and cached it in metadata_dir.
                top = Metadata[Targets].from_file(str(Path(metadata_dir) / "targets.json"))
                names = sorted(top.signed.targets)
                if not names:
                    raise RuntimeError("top-level targets metadata lists no targets")

            for name in names:
                info = updater.get_targetinfo(name)
                if info is None:
                    raise RuntimeError(f"target {name!r} not found in signed metadata")
                dest = args.out / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                path = updater.download_target(info, filepath=str(dest))
                print(path)
    except Exception as e:  # noqa: BLE001 - report any failure as one line
        print(f"download.py: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
