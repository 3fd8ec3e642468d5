"""Training settings: TrainConfig (optimisation and protocol) and `--set key=value` overrides that go to
whichever config (FDRLConfig or TrainConfig) owns the key."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from fdrl_core.config import FDRLConfig
from fdrl_core.labels import LABEL_SETS, LabelSet


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
