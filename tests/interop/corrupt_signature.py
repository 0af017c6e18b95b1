#!/usr/bin/env python3
"""Corrupt the first signature of a TUF metadata file in place, keeping it valid JSON.

Usage: corrupt_signature.py METADATA_FILE

Flips one hex character (the first one) of signatures[0].sig, so the file still parses but
the signature no longer verifies. Prints the keyid whose signature was changed.
"""

import json
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(sys.argv[1])
    doc = json.loads(path.read_text())
    sigs = doc.get("signatures") or []
    if not sigs or not sigs[0].get("sig"):
        print(f"corrupt_signature.py: {path}: no signature to corrupt", file=sys.stderr)
        return 1
    sig = sigs[0]["sig"]
    flipped = "1" if sig[0] == "0" else "0"
    sigs[0]["sig"] = flipped + sig[1:]
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(sigs[0].get("keyid", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
