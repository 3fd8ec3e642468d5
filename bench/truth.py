"""A spoken test stream whose true utterance times are known from its generation.

Sentences are spoken by espeak-ng and festival (alternating), each clip trimmed to its voiced part, and
laid out with silences between them; the stream records where each utterance's first and last voiced
samples are. "True end of speech" is the last voiced sample: what a listener hears as the end, before
any VAD hangover. The WAV and a JSON sidecar are cached by their recipe, so every system in a run (and
every later run) hears the same audio.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fdrl_core.audio import SAMPLE_RATE

# Distinct wording (so finals can be matched to utterances by their words), no digits (spelled
# differently by different recognisers), 4-12 words each.
SENTENCES = (
    "I am so happy to see you again after all this time",
    "The weather is terrible today and I feel miserable",
    "Please put the red box on the kitchen table",
    "Why did you break my favourite mug without asking",
    "We finally won the championship this year",
    "Nobody came to my birthday party last night",
    "Turn left at the corner and walk to the station",
    "Get out of my room right now",
    "The meeting has been moved to Friday morning",
    "I cannot believe you lied to me again",
    "Our garden is full of bright yellow flowers",
    "She quietly closed the door and went to sleep",
)
# engine, voice (festival voices from festvox-kallpc16k / -kdlpc16k / -us-slt-hts, see scripts/setup.sh)
VOICES = (("espeak-ng", "en-us"), ("festival", "kal_diphone"), ("espeak-ng", "en"),
          ("festival", "cmu_us_slt_arctic_hts"), ("espeak-ng", "en-us+f3"), ("festival", "ked_diphone"))


class GenerationError(RuntimeError):
    """The TTS engines could not make the stream (not installed, a voice missing)."""


@dataclass(frozen=True)
class TrueUtterance:
    index: int
    text: str
    voice: str  # "engine:voice"
    start_s: float  # first voiced sample, seconds from the stream start
    end_s: float  # last voiced sample: the true end of speech


@dataclass
class GeneratedStream:
    path: Path
    duration_s: float
    utterances: list[TrueUtterance]

    def to_json(self) -> dict:
        return {"path": str(self.path), "duration_s": self.duration_s,
                "utterances": [asdict(u) for u in self.utterances]}

    @classmethod
    def from_json(cls, d: dict) -> GeneratedStream:
        return cls(Path(d["path"]), float(d["duration_s"]), [TrueUtterance(**u) for u in d["utterances"]])


def voiced_bounds(x: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold_db: float = -40.0,
                  frame_ms: int = 10) -> tuple[int, int] | None:
    """(first, last+1) sample of the voiced part: 10 ms frames whose RMS is within `threshold_db` of the
    loudest frame. None for silence. TTS engines pad clips with silence; this finds the speech inside."""
    x = np.asarray(x, dtype=np.float64)
    n = sample_rate * frame_ms // 1000
    frames = len(x) // n
    if frames == 0:
        return None
    rms = np.sqrt(np.mean(x[: frames * n].reshape(frames, n) ** 2, axis=1))
    peak = rms.max()
    if peak <= 1e-6:
        return None
    loud = np.flatnonzero(rms >= peak * 10 ** (threshold_db / 20))
    first, last = int(loud[0]) * n, (int(loud[-1]) + 1) * n
    # refine to the sample inside the edge frames
    seg = np.abs(x[first:last])
    floor = peak * 10 ** (threshold_db / 20)
    above = np.flatnonzero(seg >= floor)
    if len(above):
        first, last = first + int(above[0]), first + int(above[-1]) + 1
    return first, last


def compose(clips: list[tuple[str, str, np.ndarray]], gaps_s: list[float], lead_s: float, tail_s: float,
            sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[TrueUtterance]]:
    """Lay voiced clips out with `lead_s` silence first, `gaps_s[i]` after clip i (the last gap is
    replaced by `tail_s`); return the audio and each clip's true start/end."""
    pieces = [np.zeros(int(lead_s * sample_rate), np.float32)]
    pos = len(pieces[0])
    utts = []
    for i, (text, voice, audio) in enumerate(clips):
        bounds = voiced_bounds(audio, sample_rate)
        if bounds is None:
            raise GenerationError(f"{voice} produced silence for {text!r}")
        a = np.asarray(audio[bounds[0]:bounds[1]], dtype=np.float32)
        utts.append(TrueUtterance(i, text, voice, round(pos / sample_rate, 6), round((pos + len(a)) / sample_rate, 6)))
        gap = tail_s if i == len(clips) - 1 else gaps_s[i]
        pieces += [a, np.zeros(int(gap * sample_rate), np.float32)]
        pos += len(a) + int(gap * sample_rate)
    return np.concatenate(pieces), utts


def speak(text: str, voice: str, wav: Path) -> np.ndarray:
    """One sentence through espeak-ng or festival's text2wave, as float32 at 16 kHz."""
    from fdrl_core.audio import load_audio

    engine, name = voice.split(":", 1)
    if engine == "espeak-ng":
        cmd = ["espeak-ng", "-v", name, "-w", str(wav), text]
    else:
        cmd = ["text2wave", "-o", str(wav), "-eval", f"(voice_{name})"]
    exe = shutil.which(cmd[0])
    if exe is None:
        raise GenerationError(f"{cmd[0]} is not installed (scripts/setup.sh installs espeak-ng and festival)")
    res = subprocess.run(cmd, input=text if engine == "festival" else None, capture_output=True, text=True,
                         timeout=120, check=False)
    if res.returncode != 0 or not wav.is_file() or wav.stat().st_size < 100:
        err = (res.stderr or res.stdout or "").strip().splitlines()
        raise GenerationError(f"{voice} failed on {text!r}: {err[-1] if err else 'no output'}")
    return load_audio(wav)


@dataclass(frozen=True)
class StreamRecipe:
    sentences: tuple[str, ...] = SENTENCES
    voices: tuple[tuple[str, str], ...] = VOICES
    gap_s: tuple[float, float] = (2.5, 4.0)  # silence between utterances: uniform in this range
    lead_s: float = 1.0
    tail_s: float = 5.0  # silence after the last utterance, so every system can finish it
    seed: int = 10

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def generate_stream(folder: Path, recipe: StreamRecipe = StreamRecipe(), n: int | None = None) -> GeneratedStream:
    """The stream for `recipe` (its first `n` sentences), cached in `folder` as truth-<key>.wav/.json."""
    import soundfile as sf

    sentences = recipe.sentences[:n] if n else recipe.sentences
    key = StreamRecipe(tuple(sentences), recipe.voices, recipe.gap_s, recipe.lead_s, recipe.tail_s,
                       recipe.seed).key()
    folder = folder.resolve()  # peers' drivers run in other working directories
    folder.mkdir(parents=True, exist_ok=True)
    wav, meta = folder / f"truth-{key}.wav", folder / f"truth-{key}.json"
    if wav.is_file() and meta.is_file():
        return GeneratedStream.from_json({**json.loads(meta.read_text()), "path": str(wav)})
    rng = np.random.default_rng(recipe.seed)
    clips = []
    with tempfile.TemporaryDirectory(prefix="fdrl-truth-") as tmp:
        for i, text in enumerate(sentences):
            engine, name = recipe.voices[i % len(recipe.voices)]
            voice = f"{engine}:{name}"
            clips.append((text, voice, speak(text, voice, Path(tmp) / f"{i}.wav")))
    gaps = [float(g) for g in rng.uniform(*recipe.gap_s, size=len(clips))]
    audio, utts = compose(clips, gaps, recipe.lead_s, recipe.tail_s)
    peak = float(np.abs(audio).max())
    if peak > 0.99:  # festival can clip; scale the whole stream, times do not change
        audio = audio * (0.9 / peak)
    sf.write(str(wav), audio, SAMPLE_RATE, subtype="PCM_16")
    stream = GeneratedStream(wav, round(len(audio) / SAMPLE_RATE, 4), utts)
    meta.write_text(json.dumps(stream.to_json(), indent=2) + "\n")
    return stream
