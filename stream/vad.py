"""Utterance segmentation with webrtcvad: start / growing buffer / pause / end events on the audio clock.

Onset needs most of a short window voiced (a single noisy frame does not open an utterance); the
utterance then keeps `preroll_ms` of audio from before the first voiced frame, so first syllables are
not clipped. It ends after `hangover_ms` of silence and keeps `tail_ms` of audio after the last voiced
frame. `SpeechPause` fires once `tail_ms` of silence has passed: from then on the utterance's audio is
final unless speech resumes, so the run-time can start the final pass before the end is confirmed.

webrtcvad keeps calling frames speech for 60-90 ms after the voice stops (its built-in overhang), which
would count straight into the time to the final. So inside an utterance a frame the VAD calls speech
is taken for its overhang (silence) when it is no louder than the background (a running noise floor from
the frames the VAD calls silence, + `end_gate_db`) and clearly below the utterance's own speech level
(`end_margin_db`), or far below its loudest frame (`end_range_db`). In low-SNR audio speech is close to
the background, the second test keeps it voiced, and webrtcvad decides alone. Onsets use webrtcvad alone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fdrl_core.audio import SAMPLE_RATE


@dataclass
class VadConfig:
    aggressiveness: int = 2  # webrtcvad 0 (keeps most as speech) .. 3 (strictest)
    frame_ms: int = 30  # 10, 20 or 30
    start_window_ms: int = 150  # onset: at least start_ratio of this window voiced
    start_ratio: float = 0.6
    preroll_ms: int = 300  # audio kept before the first voiced frame
    hangover_ms: int = 600  # silence that ends an utterance
    tail_ms: int = 120  # audio kept after the last voiced frame (<= hangover_ms)
    min_speech_ms: int = 250  # shorter (onset to last voiced frame): noise, dropped
    max_utterance_s: float = 15.0  # longer speech is split (Whisper sees at most 30 s)
    split_search_ms: int = 1500  # a forced split looks this far back for the quietest frame
    # end of speech: a voiced frame must be this much above the noise floor (0 disables the gate) ...
    end_gate_db: float = 6.0
    end_range_db: float = 45.0  # ... and at most this much below the utterance's loudest frame;
    end_margin_db: float = 10.0  # a frame this close to the utterance's mean speech level is always voice

    def validate(self) -> VadConfig:
        checks = [
            (self.aggressiveness in (0, 1, 2, 3), "vad aggressiveness must be 0..3"),
            (self.frame_ms in (10, 20, 30), "vad frame must be 10, 20 or 30 ms"),
            (0 < self.start_ratio <= 1, "vad start ratio must be in (0, 1]"),
            (self.start_window_ms >= self.frame_ms, "vad start window must be at least one frame"),
            (0 <= self.tail_ms <= self.hangover_ms, "vad tail must be between 0 and the hangover"),
            (self.hangover_ms >= self.frame_ms, "vad hangover must be at least one frame"),
            (self.preroll_ms >= 0 and self.min_speech_ms >= 0, "vad pre-roll and minimum must be >= 0"),
            (1.0 <= self.max_utterance_s <= 29.0, "maximum utterance must be 1..29 s (one Whisper window)"),
            (self.split_search_ms < self.max_utterance_s * 1000, "split search must be below the maximum"),
            (self.end_gate_db >= 0 and self.end_range_db > 0 and self.end_margin_db >= 0,
             "vad end gate and margin must be >= 0 dB, its range > 0 dB"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        return self

    @property
    def frame_samples(self) -> int:
        return SAMPLE_RATE * self.frame_ms // 1000


@dataclass
class Utterance:
    """A growing buffer of 16 kHz int16 audio; sample indices are on the stream's audio clock."""
    id: int
    start: int  # first sample (pre-roll included)
    onset: int  # first voiced sample
    chunks: list[np.ndarray] = field(default_factory=list)
    n: int = 0  # samples held
    last_voiced_end: int = 0
    voiced_samples: int = 0

    def append(self, samples: np.ndarray, is_voiced: bool) -> None:
        self.chunks.append(samples)
        self.n += len(samples)
        if is_voiced:
            self.last_voiced_end = self.start + self.n
            self.voiced_samples += len(samples)

    @property
    def end(self) -> int:
        return self.start + self.n

    def audio(self, end: int | None = None) -> np.ndarray:
        """int16 samples from `start` to `end` (default: all held)."""
        x = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.int16)
        if len(self.chunks) > 1:  # keep one chunk so repeated calls stay cheap
            self.chunks = [x]
        return x if end is None else x[: max(0, end - self.start)]


@dataclass
class SpeechStart:
    utt: Utterance


@dataclass
class SpeechGrow:
    """`grow_every_ms` more voiced speech since the last one (the cue for a partial pass). Events carry a
    copy of the audio so far, so they can be handed to another thread while the buffer keeps growing."""
    utt: Utterance
    end: int
    revision: int
    audio: np.ndarray = field(repr=False)


@dataclass
class SpeechPause:
    """Silence reached `tail_ms`: `audio` ([utt.start, end)) is the utterance unless speech resumes."""
    utt: Utterance
    end: int
    audio: np.ndarray = field(repr=False)


@dataclass
class SpeechEnd:
    utt: Utterance
    end: int
    reason: str  # "silence" | "max_length" | "flush" | "stop"
    revision: int  # one more than the last SpeechGrow of this utterance
    audio: np.ndarray = field(repr=False)


@dataclass
class SpeechDiscard:
    """Opened but too short to be speech: nothing is published for it."""
    utt: Utterance


Event = SpeechStart | SpeechGrow | SpeechPause | SpeechEnd | SpeechDiscard


class Segmenter:
    """Feed frames in order with `push`; it returns the events each frame caused. `flush` at end of input."""

    def __init__(self, cfg: VadConfig | None = None, grow_every_ms: int | None = 700,
                 first_grow_ms: int | None = None):
        """grow_every_ms: a SpeechGrow per this much new voiced speech (None: never); first_grow_ms: the
        first one already after this much (default: grow_every_ms), so a first partial comes early."""
        import webrtcvad

        self.cfg = cfg = (cfg or VadConfig()).validate()
        self.vad = webrtcvad.Vad(cfg.aggressiveness)
        self.fs = cfg.frame_samples
        self.grow_every = None if not grow_every_ms else grow_every_ms * SAMPLE_RATE // 1000
        self.first_grow = self.grow_every if not first_grow_ms or not self.grow_every else \
            min(self.grow_every, first_grow_ms * SAMPLE_RATE // 1000)
        self.window = max(1, cfg.start_window_ms // cfg.frame_ms)
        ring = self.window + -(-cfg.preroll_ms // cfg.frame_ms)
        self.ring: deque[tuple[np.ndarray, int, bool]] = deque(maxlen=ring)  # (samples, start, voiced)
        self.utt: Utterance | None = None
        self.next_id = 0
        self.silence = 0  # samples of silence since the last voiced frame
        self.paused = False
        self.grown_at = 0
        self.revision = 0
        self.speech_frames = 0
        self.frames = 0
        self.noise_db: float | None = None  # running energy of the frames the VAD calls silence
        self.peak_db = -200.0  # the current utterance's loudest voiced frame
        self.level_sum, self.level_n = 0.0, 0  # its voiced frames' mean level (dB)

    def is_speech(self, samples: np.ndarray) -> bool:
        return self.vad.is_speech(np.ascontiguousarray(samples, dtype=np.int16).tobytes(), SAMPLE_RATE)

    def push(self, samples: np.ndarray, start: int, voiced: bool | None = None) -> list[Event]:
        if len(samples) != self.fs:
            raise ValueError(f"frames must be {self.cfg.frame_ms} ms ({self.fs} samples), got {len(samples)}")
        gate = voiced is None and self.cfg.end_gate_db > 0
        if voiced is None:
            voiced = self.is_speech(samples)
        self.frames += 1
        self.speech_frames += int(voiced)
        if gate:
            db = energy_db(samples)
            if not voiced:
                self.noise_db = db if self.noise_db is None else 0.95 * self.noise_db + 0.05 * db
            elif self.utt is not None:
                voiced = self._above_background(db)
        if self.utt is None:
            self.peak_db, self.level_sum, self.level_n = -200.0, 0.0, 0
            return self._idle(samples, start, voiced)
        return self._speaking(samples, start, voiced)

    def _above_background(self, db: float) -> bool:
        """A frame the VAD calls speech, inside an utterance: is it really the voice, or the VAD's overhang?
        Overhang frames are as quiet as the background AND clearly quieter than this utterance's speech; in
        low-SNR audio the second test fails and webrtcvad is trusted as before (no utterance is split)."""
        self.peak_db = max(self.peak_db, db)
        self.level_sum += db
        self.level_n += 1
        if db < self.peak_db - self.cfg.end_range_db:
            return False
        if self.noise_db is None:
            return True
        level = self.level_sum / self.level_n
        return db >= self.noise_db + self.cfg.end_gate_db or db >= level - self.cfg.end_margin_db

    # -- states

    def _idle(self, samples: np.ndarray, start: int, voiced: bool) -> list[Event]:
        self.ring.append((samples, start, voiced))
        recent = list(self.ring)[-self.window:]
        if len(recent) < self.window or sum(v for _, _, v in recent) < self.cfg.start_ratio * self.window:
            return []
        first_voiced = next(s for _, s, v in recent if v)
        begin = max(first_voiced - self.cfg.preroll_ms * SAMPLE_RATE // 1000, self.ring[0][1])
        utt = Utterance(self.next_id, start=begin, onset=first_voiced)
        self.next_id += 1
        for x, s, v in self.ring:
            if s + len(x) <= begin:
                continue
            utt.append(x[max(0, begin - s):], v and s >= begin)
        self.ring.clear()
        self._open(utt)
        return [SpeechStart(utt)]

    def _open(self, utt: Utterance) -> None:
        self.utt = utt
        self.silence = 0 if utt.last_voiced_end == utt.end else utt.end - utt.last_voiced_end
        self.paused = False
        self.grown_at = utt.voiced_samples
        self.revision = 0

    def _speaking(self, samples: np.ndarray, start: int, voiced: bool) -> list[Event]:
        utt, cfg = self.utt, self.cfg
        utt.append(samples, voiced)
        events: list[Event] = []
        if voiced:
            self.silence = 0
            self.paused = False
            due = self.grow_every if self.revision else self.first_grow
            if self.grow_every and utt.voiced_samples - self.grown_at >= due:
                self.grown_at = utt.voiced_samples
                self.revision += 1
                events.append(SpeechGrow(utt, utt.end, self.revision, utt.audio()))
        else:
            self.silence += len(samples)
        tail = cfg.tail_ms * SAMPLE_RATE // 1000
        if not voiced and not self.paused and self.silence >= tail:
            self.paused = True
            end = utt.last_voiced_end + tail
            events.append(SpeechPause(utt, end, utt.audio(end)))
        if self.silence >= cfg.hangover_ms * SAMPLE_RATE // 1000:
            end = utt.last_voiced_end + tail
            events.append(self._close(end, "silence"))
            # the hangover after the tail may hold the pre-roll of the next utterance
            rest = utt.audio()[end - utt.start:]
            for i in range(0, len(rest) - self.fs + 1, self.fs):
                self.ring.append((rest[i:i + self.fs], end + i, False))
        elif utt.n >= cfg.max_utterance_s * SAMPLE_RATE:
            events.extend(self._split())
        return events

    def _close(self, end: int, reason: str) -> Event:
        utt = self.utt
        self.utt = None
        if utt.last_voiced_end - utt.onset < self.cfg.min_speech_ms * SAMPLE_RATE // 1000:
            self.next_id = utt.id  # nothing was published for it: ids stay gap-free
            return SpeechDiscard(utt)
        end = min(end, utt.end)
        return SpeechEnd(utt, end, reason, self.revision + 1, utt.audio(end))

    def _split(self) -> list[Event]:
        """Force an end inside long speech, at the quietest frame of the last `split_search_ms`."""
        utt = self.utt
        audio = utt.audio()
        fs = self.fs
        n_frames = len(audio) // fs
        look = min(n_frames - 1, self.cfg.split_search_ms // self.cfg.frame_ms)
        frames = audio[: n_frames * fs].reshape(n_frames, fs).astype(np.float32)
        energy = (frames[n_frames - look:] ** 2).mean(axis=1)
        cut_frame = n_frames - look + int(np.argmin(energy)) + 1  # cut after the quietest frame
        cut = utt.start + cut_frame * fs
        rest = audio[cut_frame * fs:]
        events: list[Event] = [SpeechEnd(utt, cut, "max_length", self.revision + 1, audio[: cut - utt.start])]
        self.utt = None
        nxt = Utterance(self.next_id, start=cut, onset=cut)
        self.next_id += 1
        for i in range(0, len(rest), fs):
            x = rest[i:i + fs]
            nxt.append(x, self.is_speech(x) if len(x) == fs else False)
        if nxt.voiced_samples == 0:  # keep the onset honest: the last voiced sample is the cut itself
            nxt.last_voiced_end = cut
        self._open(nxt)
        events.append(SpeechStart(nxt))
        return events

    def flush(self, reason: str = "flush") -> list[Event]:
        """End of input: close the utterance in flight (it is published, not lost)."""
        if self.utt is None:
            return []
        end = self.utt.last_voiced_end + self.cfg.tail_ms * SAMPLE_RATE // 1000
        return [self._close(end, reason)]

    @property
    def active(self) -> Utterance | None:
        return self.utt


def energy_db(samples: np.ndarray) -> float:
    """Mean power of int16 samples in dB (full scale = 90.3 dB); digital silence is -100 dB."""
    x = samples.astype(np.float32)
    return float(10 * np.log10(np.mean(x * x) + 1e-10))


def seconds(samples: int) -> float:
    return round(samples / SAMPLE_RATE, 3)
