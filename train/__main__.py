"""`python -m train {features,fit,ablate,evaluate}`: cache backbone features, train FDRL, run ablations,
evaluate a model through the run-time path.

Examples:
  python -m train features --corpus data/synth
  python -m train fit --corpus data/synth --out runs/synth --quick
  python -m train fit --corpus /data/IEMOCAP_full_release --out runs/iemocap --folds loso --set d_model=128
  python -m train ablate --corpus data/synth --out runs/ablate --seeds 3
  python -m train evaluate --model fdrl_core/demo_model --corpus my_labelled.csv --out runs/eval
  torchrun --nproc_per_node 2 -m train fit --corpus data/synth --out runs/ddp      (gloo on CPU, nccl on GPU)

Rerunning an interrupted command resumes it (same result as an uninterrupted run); --restart discards it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from fdrl_core.assets import AssetError
from fdrl_core.checkpoint import CheckpointError
from fdrl_core.cli import ArgumentParser, add_debug_flag, check_output_dir, debug_requested, run_main
from fdrl_core.config import FDRLConfig
from fdrl_core.labels import LABEL_SETS, LabelSet
from train.features import FeatureCache, FrontendOptions, default_cache_dir

log = logging.getLogger("train")


def _common(ap: argparse.ArgumentParser, training: bool = True) -> None:
    ap.add_argument("--corpus", required=True,
                    help="IEMOCAP_full_release folder, a .csv/.jsonl manifest, or a folder with manifest.jsonl "
                         "(e.g. the output of python -m train.synth)")
    ap.add_argument("--labels", default="iemocap4",
                    help=f"label set: {', '.join(sorted(LABEL_SETS))} or a labels.json (default iemocap4: "
                         "neutral, happy+excited, angry, sad)")
    ap.add_argument("--drop-unknown-labels", action="store_true",
                    help="manifest rows whose label is outside the label set are dropped (default: error)")
    ap.add_argument("--transcripts", help="JSONL of {id, text} (ASR output) to train on instead of gold text")
    ap.add_argument("--cache", help=f"feature cache folder (default {default_cache_dir()}, or $FDRL_FEATURE_CACHE)")
    ap.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16",
                    help="storage type of cached features (loaded as float32 either way; default float16)")
    ap.add_argument("--whisper-model", help="CTranslate2 Whisper folder (default: packaged tiny.en)")
    ap.add_argument("--text-model", help="BERT-style text encoder folder (default: packaged all-MiniLM-L6-v2)")
    ap.add_argument("--compute-type", default="int8",
                    help="CTranslate2 compute type of the Whisper encoder; keep it equal to the run-time's "
                         "(default int8)")
    ap.add_argument("--frontend-device", default="cpu", help="device of the Whisper encoder: cpu | cuda")
    ap.add_argument("--feature-batch", type=int, default=8, help="utterances per Whisper encoder call (default 8)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    ap.add_argument("--threads", type=int, help="torch/CTranslate2 CPU threads per process (default: the libraries' "
                                                "own; 1 is fastest on a CPU shared with other jobs)")
    add_debug_flag(ap)
    if not training:
        return
    ap.add_argument("--out", required=True, help="run folder (created); with --folds loso one sub-folder per fold")
    ap.add_argument("--folds", choices=("none", "loso"), default="none",
                    help="none: one run, splits from the corpus's split column or carved from training "
                         "speakers; loso: leave-one-session-out, one run per session plus a summary")
    ap.add_argument("--quick", action="store_true",
                    help="tiny settings for smoke tests: 2 epochs, batch 8, d_model 64, no early stopping "
                         "(later flags and --set still win)")
    ap.add_argument("--epochs", type=int, help="maximum epochs (default 30)")
    ap.add_argument("--batch-size", type=int, help="batch size per process (default 32)")
    ap.add_argument("--lr", type=float, help="peak learning rate of AdamW (default 3e-4)")
    ap.add_argument("--patience", type=int, help="early stopping: epochs without better validation UA (0 = off)")
    ap.add_argument("--seed", type=int, help="seed of initialisation, shuffling, dropout and validation carving")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="any FDRLConfig or TrainConfig field, e.g. --set d_model=128 --set align_weight=0 "
                         "--set modalities=speech --set class_weights=balanced (repeatable)")
    ap.add_argument("--device", default="auto", help="training device: auto (cuda if available) | cpu | cuda")
    ap.add_argument("--restart", action="store_true", help="discard a saved training state in --out and start over")


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m train", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", metavar="{features,fit,ablate,evaluate}")
    f = sub.add_parser("features", help="compute and cache backbone features for a corpus",
                       description="Run the Whisper encoder and the text encoder over a corpus once and cache the "
                                   "features (resumable; already cached utterances are skipped).")
    _common(f, training=False)
    fit = sub.add_parser("fit", help="train FDRL on a corpus (one run or LOSO folds)",
                         description="Train FDRL on cached features with early stopping on validation UA; writes "
                                     "metrics.json, plots and a checkpoint folder (model/) to --out.")
    _common(fit)
    ab = sub.add_parser("ablate", help="full FDRL vs. without each component vs. single modalities",
                        description="Train each ablation variant for several seeds (and LOSO folds with --folds "
                                    "loso) and write ablation.md / ablation.json to --out.")
    _common(ab)
    ab.add_argument("--seeds", type=int, default=3, help="seeds per variant: seed, seed+1, ... (default 3)")
    ab.add_argument("--variants", help="comma-separated subset (default full,no_align,no_disp,no_pred,"
                                       "speech_only,text_only; also: no_components, variant_b)")
    ev = sub.add_parser("evaluate", help="evaluate a model on a labelled corpus through the run-time path",
                        description="Run each utterance through what stream.run does (Whisper transcript + "
                                    "hallucination guard, shared encoder frames, the run-time backend) and report "
                                    "WA/UA, macro-F1, per-class recall, confusion matrices, per-speaker accuracy, "
                                    "speech-only and text-only views, calibration and uncertain outcomes "
                                    "(report.json, report.md, PNGs in --out).")
    ev.add_argument("--model", required=True, help="checkpoint folder, ONNX export folder or TensorRT engine")
    ev.add_argument("--corpus", required=True,
                    help="IEMOCAP folder, a .csv/.jsonl manifest (path, text, label[, speaker, split]) or a folder "
                         "with manifest.jsonl")
    ev.add_argument("--out", help="report folder (default runs/evaluate-<model>-<corpus>)")
    ev.add_argument("--split", help="only this split of the manifest, e.g. test (default: every utterance; "
                                    "augmented copies are always skipped)")
    ev.add_argument("--limit", type=int, default=0, help="only the first N utterances (default all)")
    ev.add_argument("--backend", default="auto", help="auto | torch | onnxruntime | tensorrt (as stream.run)")
    ev.add_argument("--device", default="cpu", help="cpu | cuda (recogniser and backend)")
    ev.add_argument("--min-confidence", type=float, default=None,
                    help="calibrated confidence below which an outcome is uncertain (default 0.5, as stream.run)")
    ev.add_argument("--labels", default=None, help="label set of the corpus (default: the model's)")
    ev.add_argument("--drop-unknown-labels", action="store_true",
                    help="manifest rows whose label the model does not know are dropped (default: error)")
    ev.add_argument("--threads", type=int, help="CPU threads for torch/CTranslate2")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _evaluate(args) -> int:
    from fdrl_core.checkpoint import read_config
    from fdrl_core.uncertainty import UncertaintyConfig
    from train.evaluate import EvalOptions, evaluate

    model = Path(args.model).expanduser()
    if not model.exists():
        raise ValueError(f"--model {args.model}: no such file or folder")
    if args.labels:
        labels = _labels(args.labels)
    elif model.is_dir() and (model / "config.json").is_file():
        labels = read_config(model).labels
    else:
        labels = LABEL_SETS["iemocap4"]
    args.transcripts = None
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    utts, _ = _load_corpus(args, labels)
    out = Path(args.out) if args.out else Path("runs") / f"evaluate-{model.name}-{Path(args.corpus).stem}"
    check_output_dir(out)
    if args.limit < 0:
        raise ValueError(f"--limit must be >= 0 (0: every utterance), not {args.limit}")
    min_conf = UncertaintyConfig().min_confidence if args.min_confidence is None else args.min_confidence
    if not 0 <= min_conf <= 1:
        raise ValueError("--min-confidence must be in [0, 1]")
    report = evaluate(model, utts, out, EvalOptions(backend=args.backend, device=args.device, split=args.split,
                                                    limit=args.limit, min_confidence=min_conf,
                                                    progress=not args.no_progress))
    full = report["views"]["full"]
    log.info("evaluate: %d utterances, WA %.1f UA %.1f macro-F1 %.1f ECE %.3f, uncertain %.1f %% -> %s",
             report["n"], 100 * full["wa"], 100 * full["ua"], 100 * full["macro_f1"], report["calibration"]["ece"],
             100 * report["uncertain"]["rate"], out / "report.md")
    return 0


def _labels(spec: str) -> LabelSet:
    if spec in LABEL_SETS:
        return LABEL_SETS[spec]
    if Path(spec).is_file():
        return LabelSet.load(spec)
    raise ValueError(f"--labels: unknown label set {spec!r} (known: {', '.join(sorted(LABEL_SETS))}, "
                     "or a labels.json file)")


def _load_corpus(args, labels: LabelSet):
    from train.corpora import find_iemocap_root, load_corpus

    path = Path(args.corpus).expanduser()
    if not path.exists():
        raise ValueError(f"--corpus {args.corpus}: no such file or folder")
    kwargs: dict = {"labels": labels}
    if args.transcripts:
        kwargs.update(transcripts=args.transcripts)
    is_iemocap = path.is_dir() and find_iemocap_root(path) is not None
    if args.drop_unknown_labels and not is_iemocap:
        kwargs["unknown_labels"] = "drop"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        utts = load_corpus(path, **kwargs)
    for w in caught:
        log.warning("%s", w.message)
    if not utts:
        raise ValueError(f"--corpus {args.corpus}: no usable utterances")
    return utts, {"path": str(path.resolve()), "kind": "iemocap" if is_iemocap else "manifest",
                  "utterances": len(utts)}


def _cache(args, max_text_tokens: int = 128) -> FeatureCache:
    opts = FrontendOptions(whisper_model=args.whisper_model, text_model=args.text_model, device=args.frontend_device,
                           compute_type=args.compute_type, max_text_tokens=max_text_tokens,
                           cpu_threads=args.threads or 0)
    return FeatureCache(args.cache, opts, dtype=args.cache_dtype)


def _configs(args, labels: LabelSet):
    from train.trainer import QUICK_MODEL, QUICK_TRAIN, TrainConfig, apply_overrides

    cfg, tcfg = FDRLConfig(labels=labels), TrainConfig()
    if args.quick:
        cfg, tcfg = apply_overrides(cfg, tcfg, {**QUICK_MODEL, **QUICK_TRAIN})
    named = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
                               ("patience", args.patience), ("seed", args.seed)) if v is not None}
    cfg, tcfg = apply_overrides(cfg, tcfg, named)
    return apply_overrides(cfg, tcfg, args.overrides)


def _run(args) -> int:
    if args.command == "evaluate":
        return _evaluate(args)
    labels, max_tokens = _labels(args.labels), 128
    if args.command in ("fit", "ablate"):  # bad settings fail before any expensive work
        cfg, tcfg = _configs(args, labels)
        labels, max_tokens = cfg.labels, cfg.max_text_tokens  # --set labels=... / max_text_tokens=... win
    if args.command == "ablate":
        from train.ablate import DEFAULT_VARIANTS, check_variants

        variants = check_variants(args.variants.split(",") if args.variants else DEFAULT_VARIANTS)
        if args.seeds < 1:
            raise ValueError("--seeds must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be >= 1")
        import torch

        torch.set_num_threads(args.threads)
    if args.command in ("fit", "ablate"):  # before the corpus is read and its features computed
        check_output_dir(args.out)
    utts, corpus = _load_corpus(args, labels)
    cache = _cache(args, max_tokens)
    progress = not args.no_progress
    if args.command == "features":
        cache.build(utts, batch_size=args.feature_batch, progress=progress)
        log.info("features for %d utterances cached in %s", len(utts), cache.root)
        return 0

    from train.trainer import RunContext, init_distributed

    dist = init_distributed(args.device)
    if not dist.main:
        log.setLevel(logging.WARNING)
    try:
        # one process extracts, the others wait and then only hash (nothing is left to compute)
        index = cache.build(utts, batch_size=args.feature_batch, progress=progress) if dist.main else None
        dist.barrier()
        if index is None:
            index = cache.build(utts, progress=False)
        ctx = RunContext(cache=cache, index=index, dist=dist, progress=progress, command=args.command_line,
                         corpus=corpus, restart=args.restart)
        if args.command == "fit":
            from train.trainer import run_experiment

            run_experiment(utts, args.out, cfg, tcfg, ctx, folds=args.folds)
        else:
            from train.ablate import run_ablation

            run_ablation(utts, args.out, cfg, tcfg, ctx, variants=variants,
                         seeds=[tcfg.seed + i for i in range(args.seeds)], folds=args.folds)
        if dist.main:
            log.info("done: %s", args.out)
    finally:
        if dist.world > 1:
            import torch.distributed

            torch.distributed.destroy_process_group()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help(sys.stderr)
        return 2
    args.command_line = " ".join(shlex.quote(a) for a in ["python", "-m", "train", *argv])
    if getattr(args, "no_progress", False):  # transformers' weight-loading bar too
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    def body() -> int:
        with logging_redirect_tqdm(loggers=[log]):
            return _run(args)

    try:
        # the trainer reports what the user gave it (corpus rows, labels, --set values) as ValueError/KeyError
        from stream.backends import BackendError  # evaluate: a model folder no backend can open
        from stream.emotion import ModelMissing

        return run_main("train", body, debug=debug_requested(args),
                        input_errors=(ValueError, KeyError, AssetError, CheckpointError, BackendError, ModelMissing),
                        on_interrupt="interrupted: rerun the same command to resume")
    finally:
        log.removeHandler(handler)


if __name__ == "__main__":
    raise SystemExit(main())
