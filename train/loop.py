"""The resumable training loop of one run (FDRL_SPEC.md section 8): AdamW, warm-up + cosine/linear decay,
gradient clipping, early stopping on validation UA, state saved every `save_every` steps and at each
epoch end. Distributed: under `torchrun` every process trains on its DistributedSampler shard; validation
is computed by each process on the full split (identical weights give identical decisions, so no
communication is needed for early stopping); only rank 0 writes files."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fdrl_core.config import FDRLConfig
from fdrl_core.model import FDRL, fdrl_losses
from fdrl_core.speaker_norm import SPEAKER_NORMS
from train.corpora import format_counts
from train.data import Batch, FeatureDataset, ResumableSampler, SpeakerReferences, collate
from train.distributed import DistContext
from train.evaluation import finish, scores
from train.features import FeatureCache, FeatureEntry
from train.settings import TrainConfig
from train.splits import Splits
from train.state import (
    CRASH_ENV,
    STATE,
    SimulatedCrash,
    atomic_torch_save,
    data_identity,
    diff_keys,
    rng_state,
    seed_all,
    set_rng_state,
)

log = logging.getLogger("train")


class _LossModule(nn.Module):
    """Model + losses in one forward, so DistributedDataParallel sees every parameter the losses use."""

    def __init__(self, model: FDRL, class_weights: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, speech, speech_mask, text, text_mask, y, progress: float):
        out = self.model(speech, speech_mask, text, text_mask)
        return fdrl_losses(self.model, out, y, progress, self.class_weights)


def _lr_lambda(tcfg: TrainConfig, total: int):
    warm = int(round(tcfg.warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        p = min(1.0, (step - warm) / max(1, total - warm))
        return 0.5 * (1 + math.cos(math.pi * p)) if tcfg.schedule == "cosine" else 1.0 - p
    return factor


@dataclass
class RunContext:
    """What a run needs besides its data and configs."""

    cache: FeatureCache
    index: dict[str, FeatureEntry]
    dist: DistContext = field(default_factory=DistContext)
    progress: bool = True
    command: str | None = None
    corpus: dict = field(default_factory=dict)  # description for meta.json (path, kind)
    restart: bool = False


def train_run(splits: Splits, run_dir: str | Path, cfg: FDRLConfig, tcfg: TrainConfig, ctx: RunContext,
              name: str = "") -> dict:
    """Train one model (resuming from run_dir/state.pt when it matches), write its outputs, return metrics."""
    run_dir = Path(run_dir)
    dist = ctx.dist
    if dist.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    handler, level = None, log.level
    if dist.main:  # train.log gets the INFO lines even when the caller configured no logging
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        if log.getEffectiveLevel() > logging.INFO:
            log.setLevel(logging.INFO)
    try:
        return _train_run(splits, run_dir, cfg, tcfg, ctx, name or run_dir.name)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
            log.setLevel(level)


def speaker_group(u, training: bool):
    """Whose running statistics an utterance belongs to (speech_norm="speaker*"): its speaker; in training an
    augmented copy (pitch, tract length, room, noise) is a different voice heard once, so it stands alone.
    Evaluation never sees augmented copies of its own (make_views and train evaluate drop them)."""
    if training and u.meta.get("augmented"):
        return None
    return u.speaker or "<corpus>"


def _datasets(splits: Splits, cfg: FDRLConfig, index: dict[str, FeatureEntry], seed: int = 0):
    def ds(utts, training: bool):
        entries = [index[u.id] for u in utts]
        refs = None
        if cfg.speech_norm in SPEAKER_NORMS:
            refs = SpeakerReferences(entries, [speaker_group(u, training) for u in utts],
                                     mode="warmup" if training else "running", decay=cfg.speaker_decay,
                                     context=cfg.speaker_context, seed=seed, max_frames=cfg.max_speech_frames,
                                     scale=cfg.speech_norm == "speaker_std")
        return FeatureDataset(entries, [cfg.labels.index(u.label) for u in utts],
                              max_speech_frames=cfg.max_speech_frames, max_text_tokens=cfg.max_text_tokens,
                              references=refs)
    return ds(splits.train, True), ds(splits.val, False), ds(splits.test, False) if splits.test else None


def _train_run(splits: Splits, run_dir: Path, cfg: FDRLConfig, tcfg: TrainConfig, ctx: RunContext,
               name: str) -> dict:
    dist, device = ctx.dist, ctx.dist.device
    state_path = run_dir / STATE
    train_ds, val_ds, test_ds = _datasets(splits, cfg, ctx.index, tcfg.seed)
    speech_dim, text_dim = train_ds.dims()
    cfg = replace(cfg, speech_dim=speech_dim, text_dim=text_dim)  # the features define the input widths
    classes = list(cfg.labels.classes)
    identity = {"model": cfg.to_dict(), "train": tcfg.identity(), "world_size": dist.world,
                "data": data_identity(splits, ctx.index, cfg.labels),
                "features": {"speech": ctx.cache.speech_identity["key"], "text": ctx.cache.text_identity["key"]}}

    if (run_dir / "metrics.json").is_file() and state_path.is_file() and not ctx.restart:
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        if saved.get("done") and saved.get("identity") == identity:
            log.info("[%s] already complete: %s", name, run_dir / "metrics.json")
            return json.loads((run_dir / "metrics.json").read_text())

    seed_all(tcfg.seed)
    model = FDRL(cfg).to(device)
    if dist.world > 1:  # same init everywhere (DDP also broadcasts it), different dropout per rank
        torch.manual_seed(tcfg.seed + 1000003 * dist.rank)
    opt = torch.optim.AdamW(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    sampler = ResumableSampler(train_ds, num_replicas=dist.world, rank=dist.rank, seed=tcfg.seed,
                               lengths=train_ds.lengths(), batch_size=tcfg.batch_size,
                               pool_batches=tcfg.bucket_batches)
    steps_per_epoch = math.ceil(sampler.per_rank / tcfg.batch_size)
    total_steps = steps_per_epoch * tcfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(tcfg, total_steps))
    class_weights = None
    if tcfg.class_weights == "balanced":
        counts = np.bincount(train_ds.labels, minlength=cfg.num_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / (cfg.num_classes * np.maximum(counts, 1)), 0.0)
        class_weights = torch.tensor(w, dtype=torch.float32, device=device)
    step_module: nn.Module = _LossModule(model, class_weights)
    if dist.world > 1:
        # modules of a disabled component (or of the absent modality's losses) get no gradient
        unused = min(cfg.align_weight, cfg.disp_weight, cfg.pred_weight) == 0 or len(cfg.modalities) < 2 \
            or cfg.align_variant == "B"
        step_module = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=unused)

    st = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_ua": -1.0, "best_epoch": -1, "bad_epochs": 0,
          "history": [], "done": False, "stopped_early": False}
    accum: dict[str, float] = {}
    best_state = None
    if state_path.is_file() and not ctx.restart:
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        if saved.get("identity") != identity:
            diff = ", ".join(diff_keys(saved.get("identity", {}), identity)[:6])
            raise ValueError(f"{run_dir} holds a training state for a different setup (differs in: {diff}); "
                             "use another --out or pass --restart to discard it")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        st = saved["progress"]
        best_state = saved["best_model"]
        accum = saved["accum"][dist.rank]
        set_rng_state(saved["rng"][dist.rank])
        log.info("[%s] resuming at epoch %d, step %d/%d", name, st["epoch"] + 1, st["step_in_epoch"],
                 steps_per_epoch)
    elif dist.main:
        log.info("[%s] %d train / %d val / %d test utterances (%s); %d steps/epoch x %d epochs on %s x%d",
                 name, len(splits.train), len(splits.val), len(splits.test), splits.note, steps_per_epoch,
                 tcfg.epochs, device, dist.world)
        roles = [replace(u, split=role) for role, part in (("train", splits.train), ("val", splits.val),
                                                            ("test", splits.test)) for u in part]
        log.info("[%s] label counts:\n%s", name, format_counts(roles, by="split", classes=classes))

    def save_state():
        # every rank contributes its RNG state and running sums; rank 0 writes
        rngs = dist.gather(rng_state())
        accums = dist.gather(dict(accum))
        if dist.main:
            atomic_torch_save({"identity": identity, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "progress": st, "best_model": best_state,
                                "accum": accums, "rng": rngs}, state_path)
        dist.barrier()

    crash_spec = os.environ.get(CRASH_ENV, "").partition(":")
    crash_at = int(crash_spec[0] or 0)
    loader_gen = torch.Generator().manual_seed(tcfg.seed)  # keeps DataLoader off the global RNG
    model.train()
    while not st["done"]:
        sampler.set_epoch(st["epoch"], start=st["step_in_epoch"] * tcfg.batch_size)
        train_ds.set_epoch(st["epoch"])
        loader = DataLoader(train_ds, batch_size=tcfg.batch_size, sampler=sampler, collate_fn=collate,
                            num_workers=tcfg.num_workers, generator=loader_gen)
        desc = f"{name} epoch {st['epoch'] + 1}/{tcfg.epochs}"
        with tqdm(total=steps_per_epoch, initial=st["step_in_epoch"], desc=desc, unit="step", leave=False,
                  disable=not (ctx.progress and dist.main)) as bar:
            for batch in loader:
                b: Batch = batch.to(device)
                losses = step_module(b.speech, b.speech_mask, b.text, b.text_mask, b.y,
                                     st["global_step"] / total_steps)
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                if tcfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
                opt.step()
                sched.step()
                st["global_step"] += 1
                st["step_in_epoch"] += 1
                n = len(b)
                accum["n"] = accum.get("n", 0.0) + n
                for k, v in losses.items():
                    accum[k] = accum.get(k, 0.0) + float(v.detach()) * n
                bar.update(1)
                bar.set_postfix(loss=f"{float(losses['total'].detach()):.3f}")
                if crash_at and st["global_step"] == crash_at:
                    if crash_spec[2] == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    raise SimulatedCrash(f"{CRASH_ENV}={crash_at}")
                if tcfg.save_every and st["global_step"] % tcfg.save_every == 0 \
                        and st["step_in_epoch"] < steps_per_epoch:
                    save_state()

        # epoch end: average the loss components over all ranks, validate, early stopping
        keys = sorted(k for k in accum if k != "n")
        sums = torch.tensor([accum.get("n", 0.0)] + [accum[k] for k in keys], dtype=torch.float64)
        if dist.world > 1:
            torch.distributed.all_reduce(sums)
        train_avg = {k: float(sums[i + 1] / max(1.0, float(sums[0]))) for i, k in enumerate(keys)}
        record = {"epoch": st["epoch"] + 1, "lr": opt.param_groups[0]["lr"], "train": train_avg,
                  "val": scores(model, val_ds, device, classes)}
        if test_ds is not None:  # monitored only: the optimistic "best epoch on test" bound of many papers
            record["test"] = scores(model, test_ds, device, classes)
        st["history"].append(record)
        ua = record["val"]["ua"]
        if ua > st["best_ua"]:
            st.update(best_ua=ua, best_epoch=record["epoch"], bad_epochs=0)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            st["bad_epochs"] += 1
        # align_speech/align_text: ln 2 = 0.693 when the modality discriminator is confused (p_disc ~ 0.5)
        log.info("[%s] epoch %d: loss %.4f (cls %.4f align %.4f [speech %.3f text %.3f, disc acc %.2f p %.2f] "
                 "disp %.4f [orth speech %.3f text %.3f] pred %.4f) | val WA %.4f UA %.4f F1 %.4f%s",
                 name, record["epoch"], train_avg.get("total", 0), train_avg.get("cls", 0),
                 train_avg.get("align", 0), train_avg.get("align_speech", 0), train_avg.get("align_text", 0),
                 train_avg.get("acc_shared_disc", 0), train_avg.get("p_shared_disc", 0), train_avg.get("disp", 0),
                 train_avg.get("orth_speech", 0), train_avg.get("orth_text", 0), train_avg.get("pred", 0),
                 record["val"]["wa"], ua, record["val"]["macro_f1"], " *" if st["best_epoch"] == record["epoch"]
                 else "")
        st["epoch"] += 1
        st["step_in_epoch"] = 0
        accum = {}
        if tcfg.patience and st["bad_epochs"] >= tcfg.patience and st["epoch"] < tcfg.epochs:
            st["stopped_early"] = True
            log.info("[%s] early stop: no better validation UA for %d epochs", name, tcfg.patience)
        st["done"] = st["stopped_early"] or st["epoch"] >= tcfg.epochs
        save_state()

    model.load_state_dict(best_state)
    result = finish(model, cfg, tcfg, splits, (val_ds, test_ds), run_dir, ctx, st, name)
    return result
