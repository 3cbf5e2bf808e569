"""Print the cocktail-table recipe's Markdown tables from its `fid-METHOD-EXTRACTOR.json` files.

    python cocktail_table.py CT_DIR --methods union,transfer --extractors toy,inception \\
        --root-kimg 8 --kimg 16 --n 500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAMES = {
    "toy": "toy-domain extractor (examples/toy-features.pt)",
    "quality": "damage-aware toy extractor (examples/toy-quality.pt)",
    "inception": "FID Inception (real weights)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--methods", required=True)
    ap.add_argument("--extractors", required=True)
    ap.add_argument("--root-kimg", required=True)
    ap.add_argument("--kimg", required=True)
    ap.add_argument("--n", required=True)
    args = ap.parse_args()
    print(
        f"FID per domain (lower is better): rooting {args.root_kimg} kimg per source, then {args.kimg} kimg "
        f"per method; {args.n} images per side"
    )
    for x in args.extractors.split(","):
        rows = []
        for m in args.methods.split(","):
            report = json.loads((args.folder / f"fid-{m}-{x}.json").read_text())
            rows.append((m, {r["domain"]: r["fid"] for r in report["rows"]}))
        domains = list(rows[0][1])
        print(f"\n{NAMES.get(x, x)}\n")
        print("| method | " + " | ".join(domains) + " | mean |")
        print("|---" * (len(domains) + 2) + "|")
        for m, v in rows:
            cells = " | ".join(f"{v[d]:.1f}" for d in domains)
            print(f"| {m} | {cells} | {sum(v.values()) / len(v):.1f} |")


if __name__ == "__main__":
    main()
