"""Train/val/test split by voice AND by sentence, deterministic for a seed.

Utterances are only generated inside consistent cells (a test voice speaks only test sentences), so no test
voice and no test sentence is ever heard in training; nothing has to be thrown away afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sentences import Sentence
from .voices import SynthError, Voice

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitFractions:
    val: float = 0.15
    test: float = 0.15

    @property
    def train(self) -> float:
        return 1.0 - self.val - self.test


def _interleave_genders(voices: list[Voice], rng: np.random.Generator) -> list[Voice]:
    """Shuffle within each gender, then alternate, so the first few picks (test, val) mix genders."""
    groups = {}
    for v in sorted(voices, key=lambda v: v.id):
        groups.setdefault(v.gender, []).append(v)
    for g in sorted(groups):
        order = rng.permutation(len(groups[g]))
        groups[g] = [groups[g][i] for i in order]
    start = sorted(groups)
    rng.shuffle(start)
    out = []
    while any(groups.values()):
        for g in start:
            if groups[g]:
                out.append(groups[g].pop(0))
    return out


def _count(n: int, frac: float) -> int:
    return max(1, int(round(n * frac))) if frac > 0 else 0


def split_voices(voices: list[Voice], seed: int, fractions: SplitFractions = SplitFractions(),
                 test_engine: str | None = None) -> dict[str, list[Voice]]:
    """{split: voices}. Per engine, so every split hears every engine; with `test_engine`, test is all of
    that engine's voices and train/val share the other engines' voices (a cross-synthesizer test)."""
    rng = np.random.default_rng([seed, 7001])
    out: dict[str, list[Voice]] = {s: [] for s in SPLITS}
    engines = sorted({v.engine for v in voices})
    if test_engine is not None:
        if test_engine not in engines:
            raise SynthError(f"--test-engine {test_engine} has no voices; add it to --engines")
        if len(engines) < 2:
            raise SynthError("--test-engine needs a second engine for train/val "
                             "(e.g. --engines espeak-ng,festival)")
    for engine in engines:
        order = _interleave_genders([v for v in voices if v.engine == engine], rng)
        if test_engine is not None:
            if engine == test_engine:
                out["test"] += order
                continue
            n_val = _count(len(order), fractions.val / (1 - fractions.test))
            n_test = 0
        else:
            n_test, n_val = _count(len(order), fractions.test), _count(len(order), fractions.val)
        if len(order) - n_test - n_val < 1:
            raise SynthError(f"engine {engine} has {len(order)} voice(s): too few to split by voice "
                             f"(need {n_test + n_val + 1}; give --voices more of its voices)")
        out["test"] += order[:n_test]
        out["val"] += order[n_test:n_test + n_val]
        out["train"] += order[n_test + n_val:]
    return {s: sorted(vs, key=lambda v: v.id) for s, vs in out.items()}


def split_sentences(bank: dict[str, list[Sentence]], seed: int, fractions: SplitFractions = SplitFractions(),
                    ) -> dict[str, dict[str, list[Sentence]]]:
    """{split: {wording: sentences}}: each wording's pool is shuffled with the seed and cut by fractions."""
    out: dict[str, dict[str, list[Sentence]]] = {s: {} for s in SPLITS}
    for w_index, (wording, sentences) in enumerate(sorted(bank.items())):
        rng = np.random.default_rng([seed, 7002, w_index])
        order = [sentences[i] for i in rng.permutation(len(sentences))]
        n_test, n_val = _count(len(order), fractions.test), _count(len(order), fractions.val)
        if len(order) - n_test - n_val < 1:
            raise SynthError(f"{len(order)} {wording} sentences are too few to split; raise --n-sentences")
        out["test"][wording] = order[:n_test]
        out["val"][wording] = order[n_test:n_test + n_val]
        out["train"][wording] = order[n_test + n_val:]
    return out
