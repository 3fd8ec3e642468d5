"""Cached features as a torch Dataset, padded batches with masks, and a sampler that can resume mid-epoch."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from fdrl_core.speaker_norm import apply, running_references, utterance_stats, warmup_reference
from train.features import FeatureCache, FeatureEntry


@dataclass
class Batch:
    speech: torch.Tensor  # [B, Ts, ds] float32
    speech_mask: torch.Tensor  # [B, Ts] bool
    text: torch.Tensor  # [B, Tt, dt] float32
    text_mask: torch.Tensor  # [B, Tt] bool
    y: torch.Tensor  # [B] int64
    index: torch.Tensor  # [B] int64, positions in the dataset (to map predictions back to ids)

    def to(self, device) -> Batch:
        return Batch(*(t.to(device, non_blocking=True) for t in
                       (self.speech, self.speech_mask, self.text, self.text_mask, self.y, self.index)))

    def __len__(self) -> int:
        return int(self.y.shape[0])


_STATS: dict[tuple[str, int], np.ndarray | None] = {}  # (speech path, max frames) -> utterance_stats


def speech_stats(entry: FeatureEntry, max_frames: int) -> np.ndarray | None:
    """Mean and mean squared speech frame of a cached utterance (as the model sees it: cut to max_frames)."""
    key = (str(entry.speech), max_frames)
    if key not in _STATS:
        x = np.load(entry.speech, mmap_mode="r")[:max_frames]
        _STATS[key] = utterance_stats(np.asarray(x, np.float32))
    return _STATS[key]


class SpeakerReferences:
    """Pooled statistics for `speech_norm="speaker"/"speaker_std"` (fdrl_core.speaker_norm), one per item.

    - "running" (validation, test): per group in the given order, the run-time's running statistics;
    - "warmup" (training): the item pooled with k ~ U{0..context} other items of its group, in random order,
      as if they had been the speaker's previous utterances on a stream; k and the others are drawn anew
      every epoch from (seed, epoch, item) only, so a resumed run sees the same references.
    A group of None is an item alone (its reference is its own mean: the first utterance of a stream)."""

    def __init__(self, entries: Sequence[FeatureEntry], groups: Sequence, *, mode: str, decay: float,
                 context: int = 0, seed: int = 0, max_frames: int = 1500, scale: bool = False):
        if mode not in ("running", "warmup"):
            raise ValueError(f"speaker reference mode must be 'running' or 'warmup', not {mode!r}")
        self.scale = scale  # speech_norm="speaker_std": also divide by the pooled spread
        self.means = [speech_stats(e, max_frames) for e in entries]
        self.groups = list(groups)
        self.mode, self.decay, self.context, self.seed = mode, decay, context, seed
        self.epoch = 0
        self._fixed = running_references(self.means, self.groups, decay) if mode == "running" else None
        members: dict = {}
        for i, g in enumerate(self.groups):
            if g is not None:
                members.setdefault(g, []).append(i)
        self._members = members

    def __call__(self, i: int) -> np.ndarray | None:
        if self._fixed is not None:
            return self._fixed[i]
        g = self.groups[i]
        others = [j for j in self._members.get(g, ()) if j != i] if g is not None else []
        rng = np.random.default_rng([self.seed, self.epoch, i])
        k = min(int(rng.integers(0, self.context + 1)), len(others))
        picked = rng.choice(len(others), size=k, replace=False) if k else []
        return warmup_reference(self.means[i], [self.means[others[j]] for j in picked], self.decay)


class FeatureDataset(Dataset):
    """One item per utterance: (speech frames, text states, class index, position). Reads the cache
    lazily, so a 5531-utterance IEMOCAP run holds only the current batch in memory. With `references`
    (speech_norm="speaker"), each item's speech frames have its reference frame subtracted."""

    def __init__(self, entries: Sequence[FeatureEntry], labels: Sequence[int], *,
                 max_speech_frames: int = 1500, max_text_tokens: int = 128,
                 references: SpeakerReferences | None = None):
        if len(entries) != len(labels):
            raise ValueError("one label per feature entry")
        self.entries = list(entries)
        self.labels = [int(y) for y in labels]
        self.max_speech_frames = max_speech_frames
        self.max_text_tokens = max_text_tokens
        self.references = references
        self._lengths: list[int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Training references are redrawn every epoch (before the epoch's DataLoader is created)."""
        if self.references is not None:
            self.references.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        speech, text = FeatureCache.load(self.entries[i])
        speech = speech[: self.max_speech_frames]
        if self.references is not None and len(speech):
            speech = apply(speech, self.references(i), self.references.scale)
        return (torch.from_numpy(np.ascontiguousarray(speech, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(text[: self.max_text_tokens])), self.labels[i], i)

    def lengths(self) -> list[int]:
        """Speech frames per item, read from the .npy headers only (for length-bucketed batches)."""
        if self._lengths is None:
            self._lengths = [min(self.max_speech_frames, int(np.load(e.speech, mmap_mode="r").shape[0]))
                             for e in self.entries]
        return self._lengths

    def dims(self) -> tuple[int, int]:
        """(speech_dim, text_dim) of the cached features."""
        speech, text = FeatureCache.load(self.entries[0])
        return int(speech.shape[1]), int(text.shape[1])


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad [T_i, d] tensors to [B, max(1, max T_i), d] with a bool mask; an empty one stays all-False."""
    width = max(1, max(s.shape[0] for s in seqs))
    out = seqs[0].new_zeros(len(seqs), width, seqs[0].shape[1])
    mask = torch.zeros(len(seqs), width, dtype=torch.bool)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return out, mask


def collate(items: list) -> Batch:
    speech, speech_mask = _pad([it[0] for it in items])
    text, text_mask = _pad([it[1] for it in items])
    y = torch.tensor([it[2] for it in items], dtype=torch.long)
    index = torch.tensor([it[3] for it in items], dtype=torch.long)
    return Batch(speech, speech_mask, text, text_mask, y, index)


class ResumableSampler(Sampler[int]):
    """DistributedSampler order (shuffled by seed + epoch, sharded by rank), optionally length-bucketed,
    that can start part-way into an epoch.

    The order depends only on (seed, epoch, rank), never on a global RNG, so a run resumed from a mid-epoch
    checkpoint sees exactly the batches the interrupted run would have seen. With `lengths`, each pool of
    `pool_batches` batches is sorted by length before it is cut into batches and the full batches are
    shuffled: utterances of similar length share a batch, so little compute goes to padding (IEMOCAP
    lengths range from 1 to 30 s). A DataLoader with the same batch_size cuts exactly these batches.
    """

    def __init__(self, dataset: Dataset, *, num_replicas: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True, lengths: Sequence[int] | None = None, batch_size: int = 1,
                 pool_batches: int = 0):
        self.inner = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                                        drop_last=False)
        self.lengths = lengths
        self.batch_size = batch_size
        self.pool_batches = pool_batches
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.epoch = epoch
        self.start = start

    def order(self) -> list[int]:
        idx = list(self.inner)
        if self.lengths is None or self.pool_batches <= 0 or self.batch_size <= 1:
            return idx
        pool = self.batch_size * self.pool_batches
        full, rest = [], []
        for i in range(0, len(idx), pool):
            chunk = sorted(idx[i: i + pool], key=lambda j: self.lengths[j])
            for k in range(0, len(chunk), self.batch_size):
                batch = chunk[k: k + self.batch_size]
                (full if len(batch) == self.batch_size else rest).append(batch)
        random.Random(f"{self.seed}:{self.epoch}").shuffle(full)
        return [j for b in full + rest for j in b]  # the one short batch stays last

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return len(self.inner) - self.start

    @property
    def per_rank(self) -> int:
        """Items per rank per epoch (the padded shard size)."""
        return len(self.inner)
