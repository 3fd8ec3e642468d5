"""Markdown summary of the cross-synthesizer experiment: trained on one engine's voices, tested on the
other's. It measures whether the model learned prosody rather than one engine's artefacts.

    python -m train.cross_engine RUN [RUN ...] > xengine.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def row(run: Path) -> list[str]:
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "model" / "config.json").read_text())
    mods = "+".join(cfg.get("modalities", ["speech", "text"]))
    test, val = metrics["test"], metrics["val"]
    return [run.name, mods, f"{100 * val['ua']:.1f}", f"{100 * test['wa']:.1f}", f"{100 * test['ua']:.1f}",
            str(test["n"])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.cross_engine", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished fit runs on a --test-engine corpus")
    args = ap.parse_args(argv)
    try:
        rows = [row(r) for r in args.runs]
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as e:
        print(f"train.cross_engine: error: {e}", file=sys.stderr)
        return 2
    print("## Cross-engine test (train/val: espeak-ng voices only; test: festival voices only)\n")
    print("| run | modalities | val UA % (espeak-ng) | test WA % (festival) | test UA % (festival) | test items |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
