"""Incremental ASR with faster-whisper (CTranslate2), sharing its encoder pass with FDRL.

Each pass encodes the utterance once through `SpeechFrontend.encode` (the same code that made the training
features), decodes that encoder output with CTranslate2 directly, and cuts FDRL's speech frames out of
the same output. Partials use greedy decoding; the final pass a small beam. Nothing is conditioned on
previous text, so one hallucination cannot feed the next.

The hallucination guard (`judge`) decides whether a transcript is reliable enough to be FDRL's text
input; an unreliable one is published, flagged, with the reason, and the emotion falls back to speech.
"""

from __future__ import annotations

import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fdrl_core.audio import SAMPLE_RATE

# Whisper's favourite inventions on silence and noise (YouTube subtitle credits and sign-offs); a transcript
# that is nothing but one of these is never trusted
SILENCE_PHRASES = (
    "thanks for watching", "thank you for watching", "thanks for watching and see you next time",
    "please subscribe", "like and subscribe", "subscribe to my channel", "don't forget to subscribe",
    "see you in the next video", "see you next time", "subtitles by the amara org community",
    "transcribed by", "translated by", "music", "applause", "silence", "blank audio", "no speech",
)
# short phrases people really say, which Whisper also invents: trusted only with a low no-speech probability
WEAK_PHRASES = ("you", "thank you", "thanks", "bye", "bye bye", "okay", "so", "oh", "uh", "um", "hmm", "i", "the")


@dataclass
class AsrConfig:
    model: str | None = None  # CTranslate2 Whisper folder; default: bundled tiny.en
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0  # 0: one per core, at most 4 (CTranslate2's own default oversubscribes 2 cores)
    language: str = "en"  # used by multilingual models only
    beam_size: int = 2  # final pass
    partial_beam_size: int = 1  # partials: greedy
    partial_every_s: float = 0.7  # a partial per this much new voiced speech; 0 disables partials
    first_partial_s: float = 0.3  # the first partial of an utterance after this much voiced speech
    max_tokens_per_s: float = 8.0  # bounds decoding (and runaway repetition) by utterance length
    # the hallucination guard
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    no_speech_alone: float = 0.9  # above this the transcript is dropped whatever the log-probability
    compression_ratio_threshold: float = 2.4
    weak_phrase_no_speech: float = 0.25
    silence_phrases: tuple[str, ...] = SILENCE_PHRASES
    weak_phrases: tuple[str, ...] = WEAK_PHRASES

    def validate(self) -> AsrConfig:
        if self.beam_size < 1 or self.partial_beam_size < 1:
            raise ValueError("beam sizes must be >= 1")
        if self.partial_every_s < 0 or self.first_partial_s < 0:
            raise ValueError("partial interval must be >= 0 (0 disables partials)")
        if not 0 <= self.no_speech_threshold <= 1:
            raise ValueError(f"--no-speech-threshold is a probability in [0, 1], not {self.no_speech_threshold:g}")
        if self.logprob_threshold > 0:
            raise ValueError(f"--logprob-threshold is a log-probability (<= 0), not {self.logprob_threshold:g}")
        return self


@dataclass
class Hypothesis:
    text: str
    reliable: bool
    reason: str | None  # why the text is not used (None when reliable)
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    encode_ms: float
    decode_ms: float
    frames: np.ndarray = field(repr=False)  # FDRL speech input [T, d] from the same encoder pass
    num_samples: int = 0
    audio: np.ndarray | None = field(default=None, repr=False)  # the samples it heard (speech-likeness check)

    @property
    def asr_ms(self) -> float:
        return self.encode_ms + self.decode_ms

    @property
    def usable_text(self) -> str | None:
        return self.text if self.reliable else None


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("\u2019", "'")).split())


def compression_ratio(text: str) -> float:
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b)) if b else 0.0


def repeated_ngram(words: list[str], min_repeats: int = 4, max_n: int = 4) -> str | None:
    """An n-gram (n <= max_n) repeated back to back `min_repeats` times: Whisper's decoding loops.
    Catches short loops ("you you you you") that the compression ratio misses on short strings, while
    "no, no, no!" stays a sentence."""
    for n in range(1, max_n + 1):
        for i in range(0, len(words) - n * min_repeats + 1):
            gram = words[i:i + n]
            if all(words[i + k * n:i + (k + 1) * n] == gram for k in range(1, min_repeats)):
                return " ".join(gram)
    return None


def judge(text: str, no_speech_prob: float, avg_logprob: float, cfg: AsrConfig) -> tuple[bool, str | None]:
    """(reliable, reason). Thresholds alone miss confident hallucinations, so known phrases and
    repetition are checked too."""
    norm = normalize(text)
    if not norm:
        return False, "no words recognised"
    if no_speech_prob > cfg.no_speech_threshold and avg_logprob < cfg.logprob_threshold:
        return False, f"silence (no-speech probability {no_speech_prob:.2f}, log-probability {avg_logprob:.2f})"
    if no_speech_prob > cfg.no_speech_alone:
        return False, f"silence (no-speech probability {no_speech_prob:.2f})"
    if avg_logprob < cfg.logprob_threshold:
        return False, f"low confidence (log-probability {avg_logprob:.2f} < {cfg.logprob_threshold})"
    cr = compression_ratio(norm)
    if cr > cfg.compression_ratio_threshold:
        return False, f"repetitive (compression ratio {cr:.1f})"
    loop = repeated_ngram(norm.split())
    if loop is not None:
        return False, f"repetitive ({loop!r} repeated)"
    if norm in {normalize(p) for p in cfg.silence_phrases}:
        return False, f"known hallucination {norm!r}"
    if norm in {normalize(p) for p in cfg.weak_phrases} and no_speech_prob > cfg.weak_phrase_no_speech:
        return False, f"likely hallucination {norm!r} (no-speech probability {no_speech_prob:.2f})"
    return True, None


def check_language(language: str, multilingual: bool) -> str | None:
    """The language to force, or None for an English-only model; an unknown code, or another language
    on an English-only model, is an error (Whisper would otherwise transcribe English, silently)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    code = (language or "en").strip().lower()
    if code not in _LANGUAGE_CODES:
        raise ValueError(f"unknown language {language!r}: Whisper knows {', '.join(sorted(_LANGUAGE_CODES)[:8])}, "
                         f"... ({len(_LANGUAGE_CODES)} codes)")
    if not multilingual:
        if code != "en":
            raise ValueError(f"language {code!r} needs a multilingual Whisper model; this one is English-only "
                             "(point --asr-model at a multilingual CTranslate2 folder)")
        return None
    return code


class Recognizer:
    """One Whisper model, shared by the recogniser and FDRL's speech frontend (loaded once)."""

    def __init__(self, cfg: AsrConfig | None = None, frontend=None, window=None):
        """window: the encoder WindowPolicy (default: the frontend's); the pipeline sets the emotion
        model's, so run-time frames match the features that model was trained on."""
        from faster_whisper.tokenizer import Tokenizer

        self.cfg = cfg = (cfg or AsrConfig()).validate()
        if frontend is None:
            from fdrl_core.speech_frontend import SpeechFrontend

            threads = cfg.cpu_threads or min(4, os.cpu_count() or 1)
            frontend = SpeechFrontend(cfg.model, device=cfg.device, compute_type=cfg.compute_type,
                                      cpu_threads=threads)
        self.frontend = frontend
        self.window = window or frontend.window
        self.whisper = frontend.whisper
        ct2 = self.whisper.model
        language = check_language(cfg.language, ct2.is_multilingual)
        self.tokenizer = Tokenizer(self.whisper.hf_tokenizer, ct2.is_multilingual, task="transcribe",
                                   language=language)
        # the prompt faster-whisper builds without previous text and without timestamps
        self.prompt = [*self.tokenizer.sot_sequence, self.tokenizer.no_timestamps]
        self.suppress = self._suppressed_tokens()
        self.max_length = int(getattr(self.whisper, "max_length", 448))

    @property
    def model_name(self) -> str:
        d = getattr(self.frontend, "model_dir", None)
        if not d:
            return "whisper"
        d = Path(d)
        return f"{d.parent.name}/{d.name}" if d.name == "model" else d.name  # packaged models live in .../model

    def _suppressed_tokens(self) -> list[int]:
        """Whisper's non-speech symbols plus the task tokens, as faster-whisper's suppress_tokens=[-1]."""
        t = self.tokenizer
        return sorted({*t.non_speech_tokens, t.transcribe, t.translate, t.sot, t.sot_prev, t.sot_lm, t.no_speech})

    def transcribe(self, audio: np.ndarray, final: bool = True, prefix: str = "") -> Hypothesis:
        """audio: float32 or int16 at 16 kHz (one utterance, up to 30 s). `prefix`: words already
        committed for this utterance; the decoder is forced to start with them (never retracted, and
        not decoded again token by token)."""
        return self.transcribe_many([(audio, final, prefix)])[0]

    def transcribe_many(self, requests: list[tuple[np.ndarray, bool, str]]) -> list[Hypothesis]:
        """Several passes (audio, final, prefix) at once, e.g. from several streams: one encoder call per
        window size and one decoder call per (window, beam) group. Results in request order."""
        cfg = self.cfg
        audios = [a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a for a, _, _ in requests]
        out: list[Hypothesis | None] = [None] * len(requests)
        lengths = [len(a) for a in audios]
        for idx in self.frontend.window_groups(lengths, self.window).values():
            t0 = time.perf_counter()
            enc = self.frontend.encode([audios[i] for i in idx], self.window)
            encode_ms = (time.perf_counter() - t0) * 1000 / len(idx)
            frames = self.frontend.frames_of_batch(enc, [lengths[i] for i in idx])
            for final in (True, False):
                sub = [j for j, i in enumerate(idx) if requests[i][1] == final]
                if not sub:
                    continue
                t1 = time.perf_counter()
                if len(sub) == len(idx):
                    enc_sub = enc
                else:
                    import ctranslate2

                    from fdrl_core.speech_frontend import encoder_output_to_host

                    enc_sub = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoder_output_to_host(enc)[sub]))
                prompts, max_new = [], 0
                for j in sub:
                    prefix = requests[idx[j]][2].strip()
                    prompts.append(self.prompt + (self.tokenizer.encode(" " + prefix) if prefix else []))
                    max_new = max(max_new, int(16 + cfg.max_tokens_per_s * lengths[idx[j]] / SAMPLE_RATE))
                results = self.whisper.model.generate(
                    enc_sub, prompts,
                    beam_size=cfg.beam_size if final else cfg.partial_beam_size,
                    max_length=min(self.max_length, max(len(p) for p in prompts) + max_new),
                    return_scores=True, return_no_speech_prob=True,
                    suppress_blank=True, suppress_tokens=self.suppress,
                )
                decode_ms = (time.perf_counter() - t1) * 1000 / len(sub)
                for j, result in zip(sub, results):
                    tokens = [t for t in result.sequences_ids[0] if t < self.tokenizer.eot]
                    text = self.tokenizer.decode(tokens).strip()
                    # as faster-whisper: scores are length-normalised sums; average over tokens plus end-of-text
                    avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
                    no_speech = float(result.no_speech_prob)
                    reliable, reason = judge(text, no_speech, avg_logprob, cfg)
                    out[idx[j]] = Hypothesis(
                        text=text, reliable=reliable, reason=reason, no_speech_prob=no_speech,
                        avg_logprob=avg_logprob, compression_ratio=compression_ratio(normalize(text)),
                        encode_ms=encode_ms, decode_ms=decode_ms, frames=frames[j], num_samples=lengths[idx[j]],
                        audio=requests[idx[j]][0])
        return out


class LocalAgreement:
    """LocalAgreement-n (as in whisper_streaming) for one utterance's successive hypotheses: a word is
    committed once `n` consecutive passes agree on it and on every word before it. Committed words only
    ever grow; the rest of the latest hypothesis is tentative."""

    def __init__(self, n: int = 2):
        if n < 1:
            raise ValueError("LocalAgreement needs n >= 1")
        self.n = n
        self.committed: list[str] = []
        self.history: list[list[str]] = []  # the last n hypotheses (words)

    @property
    def committed_text(self) -> str:
        return " ".join(self.committed)

    def update(self, text: str) -> tuple[str, str]:
        """Feed one pass's text; returns (committed, tentative)."""
        words = text.split()
        self.history = (self.history + [words])[-self.n:]
        k = len(self.committed)
        tentative = self._after_committed(words)
        if len(self.history) == self.n:
            agreed = self._common_prefix([[normalize(w) for w in h] for h in self.history])
            if agreed > k and [normalize(w) for w in words[:k]] == [normalize(w) for w in self.committed]:
                self.committed += words[k:agreed]
                tentative = words[agreed:]
        return self.committed_text, " ".join(tentative)

    def _after_committed(self, words: list[str]) -> list[str]:
        return words[len(self.committed):]

    def commit(self, text: str) -> None:
        """Commit a whole hypothesis (a published final) if it extends what is committed."""
        words = text.split()
        k = len(self.committed)
        if len(words) > k and [normalize(w) for w in words[:k]] == [normalize(w) for w in self.committed]:
            self.committed += words[k:]

    @staticmethod
    def _common_prefix(seqs: list[list[str]]) -> int:
        n = 0
        for column in zip(*seqs):
            if not column[0] or any(w != column[0] for w in column):
                break
            n += 1
        return n
