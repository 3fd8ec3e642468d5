"""Speaker normalisation of speech frames with online running statistics (`speech_norm="speaker"`).

Per-utterance mean removal (`speech_norm="utterance"`) removes the voice's baseline but also the
emotion's offset from that baseline: an angry voice is louder and higher than the same voice at rest,
and within one utterance that difference is part of the mean. Here the reference subtracted from every
frame is the speaker's mean frame over their previous utterances (with forgetting, so a new speaker on
a live stream takes over within a few utterances) pooled with the current utterance:

    reference = (m_now + sum_j decay^j * m_j) / (1 + sum_j decay^j)      j = 1 for the previous utterance

where m_* are utterance mean frames (each utterance weighs the same, whatever its length). On the first
utterance of a stream it is the utterance's own mean, i.e. exactly `speech_norm="utterance"`.
`speech_norm="speaker_std"` pools the mean squared frames the same way and also divides each dimension
by the pooled spread (the running counterpart of "utterance_std").

The reference spans utterances, so it is stream state, not graph: frames are normalised before the model
(the ONNX graph and the backends are the same as for any other model), by the ONE implementation below,
in training (train.data), `train evaluate` and the run-time (stream.emotion / stream.pipeline):

    norm = SpeakerNorm(decay)        # SpeakerNorm.for_mode("speaker_std", decay): also unit spread
    x = norm.normalise(frames)      # partial passes and finals: no state change
    norm.commit(frames, key=utt_id)  # after a published final; a revised final of the same key replaces it
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_DECAY = 0.7  # weight of an utterance one step older: memory ~ 1 / (1 - decay) = 3.3 utterances
DEFAULT_CONTEXT = 8  # training: up to this many earlier utterances of the speaker are pooled (run-time warm-up)


SPEAKER_NORMS = ("speaker", "speaker_std")  # speech_norm values normalised here, outside the graph
STD_EPS = 1e-4  # as speech_norm="utterance_std"


def utterance_stats(frames: np.ndarray) -> np.ndarray | None:
    """[mean frame, mean squared frame] (float64 [2d]) of [T, d] frames; None for an empty utterance."""
    frames = np.asarray(frames)
    if frames.ndim != 2:
        raise ValueError(f"speech frames must be [T, d], got {list(frames.shape)}")
    if frames.shape[0] == 0:
        return None
    x = frames.astype(np.float64)
    return np.concatenate([x.mean(0), np.square(x).mean(0)])


class SpeakerNorm:
    """Running reference of one stream (or one speaker): exponentially forgetting mean of the committed
    utterances' statistics (mean frame, and mean squared frame for the spread), pooled with the current
    utterance. `scale=True` (speech_norm="speaker_std") also divides by the pooled spread per dimension."""

    def __init__(self, decay: float = DEFAULT_DECAY, scale: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"speaker normalisation decay must be in [0, 1), not {decay}")
        self.decay = float(decay)
        self.scale = bool(scale)
        self.reset()

    @classmethod
    def for_mode(cls, speech_norm: str, decay: float | None = None) -> SpeakerNorm:
        return cls(DEFAULT_DECAY if decay is None else decay, scale=speech_norm == "speaker_std")

    def reset(self) -> None:
        self._sum: np.ndarray | None = None  # sum_j decay^(j-1) stats_j over committed utterances
        self._weight = 0.0  # sum_j decay^(j-1)
        self._key = None  # key of the last commit, and the state before it (a revised final replaces it)
        self._before: tuple[np.ndarray | None, float] = (None, 0.0)
        self.utterances = 0  # committed utterances (a replaced commit counts once)

    def pooled(self, stats: np.ndarray | None) -> np.ndarray | None:
        """Pooled statistics [2d] for an utterance with `stats` (None: no frames); None if nothing is known."""
        if self._sum is None:
            return None if stats is None else np.asarray(stats, np.float64)
        if stats is None:
            return self._sum / self._weight
        return (self.decay * self._sum + stats) / (self.decay * self._weight + 1.0)

    def reference(self, frames: np.ndarray) -> np.ndarray | None:
        """Reference frame [d] (float64) for the current utterance; no state change (partial passes call it
        as often as they like). None when nothing is known yet (no frames and no history)."""
        p = self.pooled(utterance_stats(frames))
        return None if p is None else p[: p.shape[0] // 2]

    def normalise(self, frames: np.ndarray) -> np.ndarray:
        """`(frames - reference) [/ spread]` as float32 [T, d]; no state change."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.shape[0] == 0:
            return frames
        return apply(frames, self.pooled(utterance_stats(frames)), self.scale)

    def commit_stats(self, stats: np.ndarray | None, key=None) -> None:
        if stats is None:
            return
        if key is not None and key == self._key:  # the same utterance again (a revised final): replace it
            self._sum, self._weight = self._before
            self.utterances -= 1
        self._before = (None if self._sum is None else self._sum.copy(), self._weight)
        self._key = key
        stats = np.asarray(stats, np.float64)
        self._sum = stats.copy() if self._sum is None else self.decay * self._sum + stats
        self._weight = self.decay * self._weight + 1.0
        self.utterances += 1

    def commit(self, frames: np.ndarray, key=None) -> None:
        """Add a finished utterance to the running statistics. With `key` (e.g. the utterance id), a second
        commit of the same key replaces the first (an early final revised after speech resumed)."""
        self.commit_stats(utterance_stats(frames), key)


def apply(frames: np.ndarray, pooled: np.ndarray | None, scale: bool) -> np.ndarray:
    """frames [T, d] normalised by pooled statistics [2d] (mean, mean square); float32."""
    if pooled is None:
        return np.asarray(frames, np.float32)
    d = pooled.shape[0] // 2
    mean = pooled[:d]
    out = np.asarray(frames, np.float32) - mean.astype(np.float32)
    if scale:
        var = np.maximum(pooled[d:] - np.square(mean), 0.0)
        out = out / np.sqrt(var + STD_EPS).astype(np.float32)
    return out.astype(np.float32, copy=False)


def running_references(stats: Sequence[np.ndarray | None], groups: Sequence, decay: float = DEFAULT_DECAY
                       ) -> list[np.ndarray | None]:
    """Deterministic pooled statistics for evaluation: per group (speaker), in the given order, exactly what
    the run-time's running statistics give (reference, then commit). A group of None is an item alone."""
    norms: dict = {}
    out = []
    for st, g in zip(stats, groups):
        norm = SpeakerNorm(decay) if g is None else norms.setdefault(g, SpeakerNorm(decay))
        out.append(norm.pooled(st))
        norm.commit_stats(st)
    return out


def warmup_reference(stats: np.ndarray | None, others: Sequence[np.ndarray | None], decay: float = DEFAULT_DECAY
                     ) -> np.ndarray | None:
    """Training: the pooled statistics after the speaker's `others` (oldest first) went by on a stream."""
    norm = SpeakerNorm(decay)
    for o in others:
        norm.commit_stats(o)
    return norm.pooled(stats)
