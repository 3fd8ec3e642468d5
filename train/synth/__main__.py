"""CLI: python -m train.synth --out DIR [options]. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from fdrl_core.cli import ArgumentParser

from .corpus import CORPUS_JSON, TINY, SynthConfig, generate_corpus
from .prosody import EMOTION_PROSODY
from .voices import ALL_VOICES, SynthError, is_installed

EPILOG = """\
what it makes:
  DIR/wav/{train,val,test}/*.wav   16 kHz mono int16 PCM
  DIR/manifest.jsonl               one JSON object per file: id, path (relative to DIR), text, label
                                   (neutral|happy|angry|sad), speaker (voice id), engine, sentence_id,
                                   carrier (both|speech|text), split, augmented, aug, duration, ...
  DIR/corpus.json                  arguments, seed, voices/sentences per split, counts, tool versions

carriers: both = emotional words + emotional voice; speech = neutral words + emotional voice;
  text = emotional words + neutral voice. Test (and validation) voices and sentences never occur in
  training. Only training audio is augmented (pitch, tempo, gain, reverb, noise).

examples:
  python -m train.synth --out data/synth                          # default: ~2.7k wavs, 1-3 minutes
  python -m train.synth --out /tmp/s --tiny                       # ~60 wavs in seconds (tests)
  python -m train.synth --out data/synth_espeak --engines espeak-ng          # one synthesizer only
  python -m train.synth --out data/synth_x --test-engine festival # train/val espeak-ng, test festival
  python -m train.synth --out data/flite --engines flite --augment 0  # a synthesizer the demo model never heard
  python -m train.synth --list-voices

needs: espeak-ng, festival (+ festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts), sox (apt-get);
flite (opt-in engine, voices awb/rms/slt/kal16) when --engines names it.
"""


def build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = ArgumentParser(
        prog="python -m train.synth", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Generate a synthetic emotional speech corpus (neutral/happy/angry/sad) with espeak-ng "
                    "and festival voices, emotion-dependent prosody, and utterances where only the words, "
                    "only the voice, or both carry the emotion.")
    p.add_argument("--out", metavar="DIR", help="output folder (created); required unless --list-voices")
    p.add_argument("--n-sentences", type=int, default=None, metavar="N",
                   help=f"distinct sentences per wording (neutral/happy/angry/sad), default {d.n_sentences}")
    p.add_argument("--n-utterances", type=int, default=None, metavar="N",
                   help=f"spoken utterances over all splits before augmentation, default {d.n_utterances}")
    p.add_argument("--engines", default=",".join(d.engines), metavar="LIST",
                   help="comma-separated synthesizers to use: espeak-ng,festival,flite (default "
                        "espeak-ng,festival; flite is opt-in)")
    p.add_argument("--voices", default=None, metavar="LIST",
                   help="comma-separated voice ids (see --list-voices); default every installed voice")
    p.add_argument("--test-engine", default=None, choices=["espeak-ng", "festival", "flite"], metavar="ENGINE",
                   help="cross-synthesizer corpus: test uses only this engine's voices (espeak-ng or "
                        "festival), train/val only the other engine's")
    p.add_argument("--seed", type=int, default=d.seed, metavar="N",
                   help="seed: splits, prosody, augmentation (default 0)")
    p.add_argument("--augment", type=int, default=d.augment, metavar="N",
                   help=f"augmented copies per training utterance (default {d.augment}; 0 = none)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, metavar="F",
                   help="share of voices/sentences/utterances for validation (default 0.15)")
    p.add_argument("--test-fraction", type=float, default=d.test_fraction, metavar="F",
                   help="share of voices/sentences/utterances for test (default 0.15)")
    p.add_argument("--tiny", action="store_true",
                   help=f"small preset for tests: {TINY['n_utterances']} utterances, {TINY['n_sentences']} "
                        "sentences per wording (explicit --n-* options still win)")
    p.add_argument("--workers", type=int, default=d.workers, metavar="N",
                   help="synthesis processes (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--list-voices", action="store_true", help="list the voice catalogue and exit")
    return p


def list_voices() -> None:
    for v in ALL_VOICES:
        state = "installed" if is_installed(v) else f"missing (apt-get install {v.apt})"
        print(f"{v.id:34s} {v.engine:10s} {v.gender}  {state}")
    print("\nprosody ranges (pitch semitones, range x, rate x, gain dB):")
    for emo, r in EMOTION_PROSODY.items():
        print(f"  {emo:8s} pitch {r.pitch_st}  range {r.range_mult}  rate {r.rate_mult}  gain {r.gain_db}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list_voices:
            try:
                list_voices()
            except BrokenPipeError:  # `... --list-voices | head`
                sys.stdout = open(os.devnull, "w")
            return 0
        if not args.out:
            raise SynthError("--out DIR is required")
        size = dict(TINY) if args.tiny else {}
        if args.n_sentences is not None:
            size["n_sentences"] = args.n_sentences
        if args.n_utterances is not None:
            size["n_utterances"] = args.n_utterances
        cfg = SynthConfig(out=args.out, engines=tuple(args.engines.split(",")),
                          voices=tuple(v.strip() for v in args.voices.split(",") if v.strip())
                          if args.voices else None,
                          test_engine=args.test_engine, seed=args.seed, augment=args.augment,
                          val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                          workers=args.workers, overwrite=args.overwrite, progress=not args.quiet, **size)
        t0 = time.time()
        manifest = generate_corpus(cfg)
    except SynthError as e:
        print(f"train.synth: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"train.synth: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("train.synth: interrupted", file=sys.stderr)
        return 130
    if not args.quiet:
        import json

        c = json.loads((manifest.parent / CORPUS_JSON).read_text())["counts"]
        s = c["by_split"]
        print(f"synth: {c['utterances']} wavs ({c['augmented']} augmented, {c['hours']:.2f} h, "
              f"{c['speakers']} voices, {c['sentences']} sentences), train/val/test "
              f"{s['train']}/{s['val']}/{s['test']}, {time.time() - t0:.0f} s -> {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
