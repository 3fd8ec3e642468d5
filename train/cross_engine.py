"""The cross-synthesizer experiment, in both directions: trained on one engine's voices, tested on the
other's. It measures whether the model learned emotion rather than one engine's artefacts, and it is where
settings are chosen ("model selection on a held-out engine").

    python -m train.cross_engine views --corpus data/synth --out data/xengine   # two manifests
    python -m train.cross_engine table RUN [RUN ...] > xengine.md               # markdown summary

A view is a manifest over the same audio (so the feature cache is shared): train/val = the train/val
splits of the source engine's utterances; test = the other engine's utterances from the val and test
splits, i.e. voices AND sentences the model never met (test-engine utterances of training sentences are
left out, so the text branch cannot recall them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fdrl_core.cli import ArgumentParser

ENGINES = ("espeak-ng", "festival")


def make_views(corpus: Path, out: Path) -> list[Path]:
    """Write one manifest per direction (<src>-to-<dst>.jsonl) into `out`; returns their paths."""
    manifest = corpus / "manifest.jsonl" if corpus.is_dir() else corpus
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    engines = sorted({r.get("engine") for r in rows})
    if any(e not in engines for e in ENGINES):
        raise ValueError(f"{manifest}: cross-engine views need utterances of {', '.join(ENGINES)} (has {engines})")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for src in ENGINES:
        dst = [e for e in ENGINES if e != src][0]
        view = []
        for r in rows:
            split = r.get("split")
            if r["engine"] == src and split in ("train", "val"):
                role = split
            elif r["engine"] == dst and split in ("val", "test") and not r.get("augmented"):
                role = "test"
            else:
                continue
            view.append({**r, "path": str((manifest.parent / r["path"]).resolve()), "split": role})
        path = out / f"{src}-to-{dst}.jsonl"
        path.write_text("".join(json.dumps(v, ensure_ascii=False) + "\n" for v in view), encoding="utf-8")
        paths.append(path)
    return paths


def row(run: Path) -> list[str]:
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = json.loads((run / "model" / "config.json").read_text())
    meta = json.loads((run / "model" / "meta.json").read_text())
    mods = "+".join(cfg.get("modalities", ["speech", "text"]))
    test, val = metrics["test"], metrics["val"]
    ece = metrics.get("calibration", {}).get("test", {}).get("ece")
    direction = Path(meta.get("corpus", {}).get("path", run.name)).stem
    return [run.name, direction, mods, f"{100 * val['ua']:.1f}", f"{100 * test['wa']:.1f}", f"{100 * test['ua']:.1f}",
            "-" if ece is None else f"{ece:.3f}", str(test["n"])]


def table(runs: list[Path]) -> str:
    lines = ["## Cross-engine test (train/val: one synthesizer; test: the other, unseen voices and sentences)", "",
             "| run | direction | modalities | val UA % (source engine) | test WA % | test UA % | test ECE "
             "| test items |", "|---|---|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row(r)) + " |" for r in runs]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m train.cross_engine", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("views", help="write the two cross-engine manifests of a synthetic corpus")
    v.add_argument("--corpus", required=True, type=Path, help="folder with manifest.jsonl (python -m train.synth)")
    v.add_argument("--out", required=True, type=Path, help="folder for <src>-to-<dst>.jsonl")
    t = sub.add_parser("table", help="markdown table of finished fit runs on the views")
    t.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.command == "views":
            for p in make_views(args.corpus, args.out):
                print(p)
        else:
            print(table(args.runs), end="")
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as e:
        print(f"train.cross_engine: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
