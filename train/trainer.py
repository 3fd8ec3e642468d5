"""Training FDRL on cached features: splits, the resumable training loop, outputs of a run, and LOSO folds.

A run directory holds everything about one model:

    state.pt                training state (model, optimizer, scheduler, RNG, epoch/step, early stopping);
                            written atomically every `save_every` steps and at each epoch end, so the same
                            command after a crash resumes and ends with the same weights as an uninterrupted run
    train.log, history.json per-epoch losses and validation scores
    metrics.json            val and test metrics of the selected (best validation UA) epoch
    predictions_{val,test}.jsonl, confusion_{val,test}.png, curves.png
    model/                  the checkpoint (fdrl_core.checkpoint) with meta.json

Distributed: under `torchrun` every process trains on its DistributedSampler shard (gloo on CPU, nccl on
GPU); validation is computed by each process on the full split (identical weights give identical
decisions, so no communication is needed for early stopping); only rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from fdrl_core.checkpoint import save_checkpoint
from fdrl_core.config import FDRLConfig
from fdrl_core.labels import LABEL_SETS, LabelSet
from fdrl_core.model import FDRL, fdrl_losses
from train.corpora import Utterance, format_counts, loso_folds, split_validation
from train.data import Batch, FeatureDataset, ResumableSampler, collate
from train.features import FeatureCache, FeatureEntry
from train.metrics import classification_metrics, format_pm, mean_std
from train.plots import plot_confusion, plot_curves

log = logging.getLogger("train")

VAL_SPLITS = ("val", "valid", "validation", "dev")
# test hook: "N" raises right after global step N (before any save); "N:kill" sends SIGKILL to this process
CRASH_ENV = "FDRL_TRAIN_CRASH_AT_STEP"
STATE = "state.pt"


@dataclass
class TrainConfig:
    """Optimisation and protocol settings (FDRL_SPEC.md section 8); model settings live in FDRLConfig."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: float = 0.06  # fraction of all steps with a linear warm-up
    schedule: str = "cosine"  # decay after warm-up: cosine | linear
    grad_clip: float = 1.0
    patience: int = 8  # stop after this many epochs without a better validation UA; 0 = never
    seed: int = 0
    class_weights: str = "none"  # none | balanced (inverse class frequency in the training split)
    val_mode: str = "speaker"  # carve validation: hold out one speaker | a stratified fraction per speaker
    val_fraction: float = 0.1
    save_every: int = 200  # also save the training state every N steps (0: only at epoch ends)
    num_workers: int = 0  # DataLoader workers reading the cache
    bucket_batches: int = 20  # sort pools of this many batches by length (less padding); 0: plain shuffle

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (0 <= self.warmup < 1, "warmup must be in [0, 1)"),
            (self.schedule in ("cosine", "linear"), f"schedule must be cosine or linear, not {self.schedule!r}"),
            (self.patience >= 0, "patience must be >= 0"),
            (self.class_weights in ("none", "balanced"), "class_weights must be none or balanced"),
            (self.val_mode in ("speaker", "fraction"), "val_mode must be speaker or fraction"),
            (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
            (min(self.save_every, self.num_workers, self.bucket_batches) >= 0,
             "save_every, num_workers and bucket_batches must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {msg}")

    def identity(self) -> dict:
        """The settings that change the result (resuming under different ones is refused)."""
        d = asdict(self)
        for k in ("save_every", "num_workers"):
            d.pop(k)
        return d


QUICK_MODEL = {"d_model": 64}
QUICK_TRAIN = {"epochs": 2, "batch_size": 8, "patience": 0, "warmup": 0.1}


# ----------------------------------------------------------------------------------------- overrides


def _parse_value(name: str, raw: str, default):
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {name}: expected true/false, not {raw!r}")
    if isinstance(default, tuple):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(default, LabelSet):
        if raw in LABEL_SETS:
            return LABEL_SETS[raw]
        if Path(raw).is_file():
            return LabelSet.load(raw)
        raise ValueError(f"--set {name}: unknown label set {raw!r} (known: {sorted(LABEL_SETS)}, or a labels.json)")
    try:
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"--set {name}: expected {type(default).__name__}, not {raw!r}") from None


def apply_overrides(cfg: FDRLConfig, tcfg: TrainConfig, pairs: Sequence[str] | dict
                    ) -> tuple[FDRLConfig, TrainConfig]:
    """Apply "key=value" strings (or a dict) to whichever config owns each key."""
    items = pairs.items() if isinstance(pairs, dict) else [_split_pair(p) for p in pairs]
    model_keys = {f.name for f in fields(FDRLConfig)}
    train_keys = {f.name for f in fields(TrainConfig)}
    m, t = {}, {}
    for key, value in items:
        if key in model_keys:
            m[key] = _parse_value(key, value, getattr(cfg, key)) if isinstance(value, str) else value
        elif key in train_keys:
            t[key] = _parse_value(key, value, getattr(tcfg, key)) if isinstance(value, str) else value
        else:
            raise ValueError(f"unknown setting {key!r}; model: {', '.join(sorted(model_keys))}; "
                             f"training: {', '.join(sorted(train_keys))}")
    return replace(cfg, **m), replace(tcfg, **t)


def _split_pair(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects key=value, not {pair!r}")
    return key.strip(), value.strip()


# ----------------------------------------------------------------------------------------- distributed


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def gather(self, obj) -> list:
        """Every rank's obj, on every rank (for RNG states and running sums in the training state)."""
        if self.world == 1:
            return [obj]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out


def init_distributed(device: str = "auto") -> DistContext:
    """Single process by default; under torchrun (WORLD_SIZE > 1) a process group, gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build has no usable CUDA device")
    dev = torch.device(f"cuda:{local}") if device == "cuda" else torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world, dev)


# ----------------------------------------------------------------------------------------- splits


@dataclass
class Splits:
    train: list[Utterance]
    val: list[Utterance]
    test: list[Utterance]
    note: str  # how val/test were chosen, for logs and metrics.json


def carve_validation(train: Sequence[Utterance], tcfg: TrainConfig, key: str = ""
                     ) -> tuple[list[Utterance], list[Utterance], str]:
    """Validation from the training data only: one held-out speaker when there are 2+, else a fraction."""
    mode = tcfg.val_mode
    if mode == "speaker" and len({u.speaker for u in train}) < 2:
        mode = "fraction"
    tr, val = split_validation(train, mode=mode, fraction=tcfg.val_fraction, seed=tcfg.seed, key=key)
    how = (f"held-out speaker {val[0].speaker}" if mode == "speaker" and val
           else f"{tcfg.val_fraction:.0%} of each training speaker")
    if not val or not tr:
        raise ValueError(f"cannot carve a validation split from {len(train)} training utterances")
    return tr, val, how


def corpus_splits(utts: Sequence[Utterance], tcfg: TrainConfig) -> Splits:
    """The corpus's own split column when it has one (train/val/test), else validation carved from training."""
    if any(u.split for u in utts):
        train = [u for u in utts if u.split == "train"]
        val = [u for u in utts if u.split in VAL_SPLITS]
        test = [u for u in utts if u.split == "test"]
        other = len(utts) - len(train) - len(val) - len(test)
        if other:
            log.warning("ignoring %d utterances whose split is not train/val/test", other)
        if not train:
            raise ValueError("the corpus has a split column but no utterance with split 'train'")
        if val:
            return Splits(train, val, test, "corpus split column")
        train, val, how = carve_validation(train, tcfg)
        return Splits(train, val, test, f"corpus split column; validation: {how}")
    train, val, how = carve_validation(list(utts), tcfg)
    return Splits(train, val, [], f"validation: {how}; no test split")


# ----------------------------------------------------------------------------------------- training


class _SimulatedCrash(BaseException):
    """Raised by the CRASH_ENV test hook; BaseException so that no error handler swallows it."""


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                   cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict) -> None:
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    kind, keys, pos, has_gauss, cached = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


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


@torch.no_grad()
def predict(model: FDRL, ds: FeatureDataset, device: torch.device, batch_size: int = 64
            ) -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities [N, C], labels [N], mean classification loss) with the model in eval mode."""
    was_training = model.training
    model.eval()
    order = np.argsort(ds.lengths(), kind="stable")  # similar lengths together: less padding
    probs = np.zeros((len(ds), model.cfg.num_classes), dtype=np.float32)
    loss_sum = 0.0
    for i in range(0, len(ds), batch_size):
        b = collate([ds[int(j)] for j in order[i: i + batch_size]]).to(device)
        logits = model(b.speech, b.speech_mask, b.text, b.text_mask).logits.float()
        loss_sum += float(nn.functional.cross_entropy(logits, b.y, reduction="sum"))
        probs[b.index.cpu().numpy()] = torch.softmax(logits, -1).cpu().numpy()
    model.train(was_training)
    return probs, np.asarray(ds.labels, dtype=np.int64), loss_sum / max(1, len(ds))


def _scores(model, ds, device, classes) -> dict:
    probs, y, loss = predict(model, ds, device)
    m = classification_metrics(y, probs.argmax(1), classes)
    return {"wa": m["wa"], "ua": m["ua"], "macro_f1": m["macro_f1"], "loss": loss}


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


def _atomic_torch_save(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _data_identity(splits: Splits, index: dict[str, FeatureEntry], labels: LabelSet) -> str:
    h = hashlib.sha256()
    for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
        for u in part:
            e = index[u.id]
            h.update(f"{name}\t{u.id}\t{labels.index(u.label)}\t{e.speech.name}\t{e.text.name}\n".encode())
    return h.hexdigest()


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff_keys(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(prefix + k)
    return out


def git_commit() -> str | None:
    """HEAD of the repository this code runs from, '+dirty' when tracked files changed; None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


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


def _datasets(splits: Splits, cfg: FDRLConfig, index: dict[str, FeatureEntry]):
    def ds(utts):
        return FeatureDataset([index[u.id] for u in utts], [cfg.labels.index(u.label) for u in utts],
                              max_speech_frames=cfg.max_speech_frames, max_text_tokens=cfg.max_text_tokens)
    return ds(splits.train), ds(splits.val), ds(splits.test) if splits.test else None


def _train_run(splits: Splits, run_dir: Path, cfg: FDRLConfig, tcfg: TrainConfig, ctx: RunContext,
               name: str) -> dict:
    dist, device = ctx.dist, ctx.dist.device
    state_path = run_dir / STATE
    train_ds, val_ds, test_ds = _datasets(splits, cfg, ctx.index)
    speech_dim, text_dim = train_ds.dims()
    cfg = replace(cfg, speech_dim=speech_dim, text_dim=text_dim)  # the features define the input widths
    classes = list(cfg.labels.classes)
    identity = {"model": cfg.to_dict(), "train": tcfg.identity(), "world_size": dist.world,
                "data": _data_identity(splits, ctx.index, cfg.labels),
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
            diff = ", ".join(_diff_keys(saved.get("identity", {}), identity)[:6])
            raise ValueError(f"{run_dir} holds a training state for a different setup (differs in: {diff}); "
                             "use another --out or pass --restart to discard it")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        st = saved["progress"]
        best_state = saved["best_model"]
        accum = saved["accum"][dist.rank]
        _set_rng_state(saved["rng"][dist.rank])
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
        rngs = dist.gather(_rng_state())
        accums = dist.gather(dict(accum))
        if dist.main:
            _atomic_torch_save({"identity": identity, "model": model.state_dict(), "optimizer": opt.state_dict(),
                                "scheduler": sched.state_dict(), "progress": st, "best_model": best_state,
                                "accum": accums, "rng": rngs}, state_path)
        dist.barrier()

    crash_spec = os.environ.get(CRASH_ENV, "").partition(":")
    crash_at = int(crash_spec[0] or 0)
    loader_gen = torch.Generator().manual_seed(tcfg.seed)  # keeps DataLoader off the global RNG
    model.train()
    while not st["done"]:
        sampler.set_epoch(st["epoch"], start=st["step_in_epoch"] * tcfg.batch_size)
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
                    raise _SimulatedCrash(f"{CRASH_ENV}={crash_at}")
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
                  "val": _scores(model, val_ds, device, classes)}
        if test_ds is not None:  # monitored only: the optimistic "best epoch on test" bound of many papers
            record["test"] = _scores(model, test_ds, device, classes)
        st["history"].append(record)
        ua = record["val"]["ua"]
        if ua > st["best_ua"]:
            st.update(best_ua=ua, best_epoch=record["epoch"], bad_epochs=0)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            st["bad_epochs"] += 1
        log.info("[%s] epoch %d: loss %.4f (cls %.4f align %.4f disp %.4f pred %.4f) | val WA %.4f UA %.4f F1 %.4f%s",
                 name, record["epoch"], train_avg.get("total", 0), train_avg.get("cls", 0),
                 train_avg.get("align", 0), train_avg.get("disp", 0), train_avg.get("pred", 0),
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
    result = _finish(model, cfg, tcfg, splits, (val_ds, test_ds), run_dir, ctx, st, name)
    return result


def _predictions(path: Path, utts: Sequence[Utterance], probs: np.ndarray, classes: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for u, p in zip(utts, probs):
            f.write(json.dumps({"id": u.id, "label": u.label, "pred": classes[int(p.argmax())],
                                "probs": {c: round(float(x), 6) for c, x in zip(classes, p)}}) + "\n")
    os.replace(tmp, path)


def _finish(model: FDRL, cfg: FDRLConfig, tcfg: TrainConfig, splits: Splits, datasets, run_dir: Path,
            ctx: RunContext, st: dict, name: str) -> dict:
    """Evaluate the selected weights on val and test; rank 0 writes metrics, predictions, figures, checkpoint."""
    classes = list(cfg.labels.classes)
    device = ctx.dist.device
    result = {"run": name, "classes": classes, "best_epoch": st["best_epoch"], "epochs_run": st["epoch"],
              "stopped_early": st["stopped_early"], "selection": "best validation UA",
              "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
              "splits": splits.note, "val": None, "test": None, "test_oracle": None}
    for part, ds, utts in (("val", datasets[0], splits.val), ("test", datasets[1], splits.test)):
        if ds is None:
            continue
        probs, y, _ = predict(model, ds, device)
        result[part] = classification_metrics(y, probs.argmax(1), classes)
        if ctx.dist.main:
            _predictions(run_dir / f"predictions_{part}.jsonl", utts, probs, classes)
            plot_confusion(result[part]["confusion"], classes, run_dir / f"confusion_{part}.png",
                           title=f"{name} {part}: WA {result[part]['wa']:.3f}  UA {result[part]['ua']:.3f}")
    if splits.test:
        best = max(st["history"], key=lambda h: h["test"]["ua"])
        result["test_oracle"] = {"epoch": best["epoch"], "ua": best["test"]["ua"], "wa": best["test"]["wa"],
                                 "note": "best epoch chosen ON TEST: an optimistic bound, not a result"}
    if ctx.dist.main:
        _write_json(run_dir / "history.json", st["history"])
        plot_curves(st["history"], run_dir / "curves.png", title=name)
        short = {p: ({k: result[p][k] for k in ("wa", "ua", "macro_f1", "n")} if result[p] else None)
                 for p in ("val", "test")}
        meta = {"frontends": ctx.cache.identity(), "corpus": {**ctx.corpus, "sizes": result["sizes"],
                                                               "splits": splits.note},
                "labels": cfg.labels.name, "metrics": short, "best_epoch": st["best_epoch"],
                "train_config": asdict(tcfg), "seed": tcfg.seed, "command": ctx.command or _argv(),
                "git_commit": git_commit(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch": torch.__version__, "world_size": ctx.dist.world}
        save_checkpoint(model, run_dir / "model", meta=meta)
        result["checkpoint"] = str(run_dir / "model")
        _write_json(run_dir / "metrics.json", result)
        for part in ("val", "test"):
            if result[part]:
                log.info("[%s] %s: WA %.4f UA %.4f macro-F1 %.4f (n=%d)", name, part, result[part]["wa"],
                         result[part]["ua"], result[part]["macro_f1"], result[part]["n"])
    ctx.dist.barrier()
    return result


def _argv() -> str:
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


# ----------------------------------------------------------------------------------------- experiments


def fold_splits(utts: Sequence[Utterance], tcfg: TrainConfig) -> list[tuple[str, Splits]]:
    """Leave-one-session-out: per session, test = that session, validation carved from the others."""
    out = []
    for session, train, test in loso_folds(utts):
        tr, val, how = carve_validation(train, tcfg, key=str(session))
        out.append((str(session), Splits(tr, val, list(test), f"LOSO: test session {session}; validation: {how}")))
    return out


def run_experiment(utts: Sequence[Utterance], out: str | Path, cfg: FDRLConfig, tcfg: TrainConfig,
                   ctx: RunContext, folds: str = "none", name: str | None = None) -> dict:
    """One run in `out` (folds="none") or one run per LOSO fold in out/fold-<session> plus a summary."""
    out = Path(out)
    name = name or out.name
    if folds == "none":
        return train_run(corpus_splits(utts, tcfg), out, cfg, tcfg, ctx, name=name)
    if folds != "loso":
        raise ValueError(f"folds must be 'none' or 'loso', not {folds!r}")
    results = {}
    for session, splits in fold_splits(utts, tcfg):
        results[session] = train_run(splits, out / f"fold-{session}", cfg, tcfg, ctx, name=f"{name} fold {session}")
    summary = summarize_folds(results, out, list(cfg.labels.classes))
    if ctx.dist.main:
        _write_json(out / "summary.json", summary)
        (out / "summary.md").write_text(summary_markdown(summary))
        log.info("LOSO over %d folds: WA %s  UA %s  F1 %s | pooled WA %.2f UA %.2f", len(results),
                 format_pm(summary["mean"]["wa"]), format_pm(summary["mean"]["ua"]),
                 format_pm(summary["mean"]["macro_f1"]), 100 * summary["pooled"]["wa"], 100 * summary["pooled"]["ua"])
    return summary


def _read_predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def summarize_folds(results: dict[str, dict], out: Path, classes: list[str]) -> dict:
    """Mean ± std over folds and the metrics of all test predictions pooled (papers report either)."""
    y, p = [], []
    for session in results:
        for row in _read_predictions(out / f"fold-{session}" / "predictions_test.jsonl"):
            y.append(classes.index(row["label"]))
            p.append(classes.index(row["pred"]))
    pooled = classification_metrics(y, p, classes)
    per_fold = {s: {k: r["test"][k] for k in ("wa", "ua", "macro_f1", "n")} | {"best_epoch": r["best_epoch"]}
                for s, r in results.items()}
    oracle = [r["test_oracle"] for r in results.values() if r.get("test_oracle")]
    return {"protocol": "leave-one-session-out", "classes": classes, "folds": per_fold,
            "mean": {k: mean_std([f[k] for f in per_fold.values()]) for k in ("wa", "ua", "macro_f1")},
            "pooled": pooled,
            "test_oracle_mean": {k: mean_std([o[k] for o in oracle]) for k in ("wa", "ua")} | {
                "note": "best epoch chosen ON TEST per fold: the optimistic bound many papers report"}}


def summary_markdown(summary: dict) -> str:
    lines = ["# Leave-one-session-out results", "",
             "Model selection on a validation split carved from the training sessions; test = held-out session.",
             "", "| fold | n | WA | UA | macro-F1 | best epoch |", "|---|---:|---:|---:|---:|---:|"]
    for s, f in summary["folds"].items():
        lines.append(f"| {s} | {f['n']} | {100 * f['wa']:.2f} | {100 * f['ua']:.2f} | {100 * f['macro_f1']:.2f} "
                     f"| {f['best_epoch']} |")
    m, pooled = summary["mean"], summary["pooled"]
    lines.append(f"| **mean ± std** | | {format_pm(m['wa'])} | {format_pm(m['ua'])} | {format_pm(m['macro_f1'])} | |")
    lines.append(f"| **pooled** | {pooled['n']} | {100 * pooled['wa']:.2f} | {100 * pooled['ua']:.2f} "
                 f"| {100 * pooled['macro_f1']:.2f} | |")
    oracle = summary.get("test_oracle_mean")
    if oracle and oracle["ua"]["n"]:
        lines += ["", f"For comparison only, best epoch chosen on the test fold (optimistic, not a result): "
                      f"WA {format_pm(oracle['wa'])}, UA {format_pm(oracle['ua'])}."]
    return "\n".join(lines) + "\n"
