"""Train/validation/test splits of a corpus: its own split column, validation carved from training speakers,
and leave-one-session-out folds. Never a test utterance in model selection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from train.corpora import Utterance, loso_folds, split_validation
from train.settings import TrainConfig

log = logging.getLogger("train")

VAL_SPLITS = ("val", "valid", "validation", "dev")


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


def fold_splits(utts: Sequence[Utterance], tcfg: TrainConfig) -> list[tuple[str, Splits]]:
    """Leave-one-session-out: per session, test = that session, validation carved from the others."""
    out = []
    for session, train, test in loso_folds(utts):
        tr, val, how = carve_validation(train, tcfg, key=str(session))
        out.append((str(session), Splits(tr, val, list(test), f"LOSO: test session {session}; validation: {how}")))
    return out
