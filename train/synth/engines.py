"""Speaking a sentence with a voice and a prosody, through espeak-ng or festival.

Each engine gets the prosody through its own native controls (that is what makes two engines useful: the
model sees two different renderings of the same trends):
  espeak-ng: -p pitch, -s words/minute, SSML <prosody range> for the pitch range;
  festival diphone voices: int_lr_params target_f0_mean / target_f0_std, Duration_Stretch;
  festival HTS voice: the HTS engine's rate (-r) and a sox pitch shift (its F0 comes from the HTS model,
  which festival exposes no range control for);
  flite: duration_stretch for the rate and a sox pitch shift (no pitch-range control either).
Loudness is set afterwards for every engine (audio.set_level).

festival runs as one long-lived `festival --pipe` per process (FestivalSession): starting festival costs
~0.4 s, a sentence ~0.05 s. Each request first calls the voice's setup function, which resets the voice's
parameters, so the output equals a fresh `text2wave` run with the same -eval forms.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
from xml.sax.saxutils import escape

import numpy as np

from .audio import set_level, sox_effects, to_int16, trim_silence
from .prosody import Prosody, sample_prosody
from .voices import SynthError, Voice, get_voice, require_tools

ESPEAK_BASE_WPM = 165
ESPEAK_PITCH_PER_ST = 5.9    # espeak -p units per semitone around the default 50 (measured on en+m3)
FESTIVAL_DIPHONE_STRETCH = 1.1  # the diphone voices' own Duration_Stretch


def _run(cmd: list[str], what: str, input_text: str | None = None) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True, input=input_text, check=False)
    if res.returncode != 0:
        err = (res.stderr or res.stdout).strip().splitlines()
        raise SynthError(f"{what} failed (exit {res.returncode}): {err[-1] if err else ''}")


def espeak_command(text: str, prosody: Prosody, voice: Voice, wav: str) -> list[str]:
    pitch = int(round(np.clip(50 + prosody.pitch_st * ESPEAK_PITCH_PER_ST, 0, 99)))
    wpm = int(round(np.clip(ESPEAK_BASE_WPM * prosody.rate_mult, 80, 450)))
    rng_pct = int(round((prosody.range_mult - 1.0) * 100))
    ssml = f'<speak><prosody range="{rng_pct:+d}%">{escape(text)}</prosody></speak>'
    return ["espeak-ng", "-m", "-z", "-v", voice.name, "-p", str(pitch), "-s", str(wpm), "-a", "100",
            "-w", wav, ssml]


def flite_command(text: str, prosody: Prosody, voice: Voice, wav: str) -> list[str]:
    return ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1.0 / prosody.rate_mult:.3f}",
            "-t", text, "-o", wav]


def festival_evals(prosody: Prosody, voice: Voice) -> list[str]:
    """Scheme forms that select the voice and set its prosody (also valid as text2wave -eval arguments)."""
    evals = [f"(voice_{voice.name})"]
    if voice.hts:
        rate = f"'(\"-r\" {prosody.rate_mult:.3f})"
        evals.append(f"(set! hts_engine_params (append hts_engine_params (list {rate})))")
    else:
        mean = voice.f0_mean * 2 ** (prosody.pitch_st / 12)
        std = voice.f0_std * prosody.range_mult
        evals.append(f"(set! int_lr_params '((target_f0_mean {mean:.2f}) (target_f0_std {std:.2f}) "
                     "(model_f0_mean 170) (model_f0_std 34)))")
        evals.append(f"(Parameter.set 'Duration_Stretch {FESTIVAL_DIPHONE_STRETCH / prosody.rate_mult:.4f})")
    return evals


class FestivalSession:
    """A `festival --pipe` child fed Scheme on stdin; a marker printed after each request says it is done."""

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._err = None
        self._n = 0

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            self._err = tempfile.TemporaryFile(mode="w+", prefix="festival-err-")
            self._proc = subprocess.Popen(["festival", "--pipe"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1)
            atexit.register(self.close)
        return self._proc

    def synth(self, text: str, evals: list[str], wav: str) -> None:
        proc = self._start()
        self._n += 1
        marker = f"@@synth-done {self._n}"
        quoted = text.replace("\\", " ").replace('"', "'").replace("\n", " ")
        save = f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav}" \'riff)'
        script = "\n".join([*evals, save, f'(print "{marker}")(fflush nil)']) + "\n"
        self._err.seek(0, os.SEEK_END)
        err_at = self._err.tell()
        try:
            proc.stdin.write(script)
            proc.stdin.flush()
            while True:
                line = proc.stdout.readline()
                if not line:
                    raise BrokenPipeError
                if line.strip() == f'"{marker}"':
                    break
        except (BrokenPipeError, OSError):
            raise SynthError(f"festival stopped: {self._stderr_tail(0)}") from None
        # festival reports a failed form on stderr and carries on with the next one: treat it as fatal,
        # or a typo would silently give the wrong voice or prosody
        new = self._stderr_tail(err_at)
        if "ERROR" in new:
            raise SynthError(f"festival: {new}")

    def _stderr_tail(self, start: int) -> str:
        if self._err is None:
            return ""
        self._err.flush()
        self._err.seek(start)
        lines = [s for s in self._err.read().splitlines() if s.strip()]
        return lines[-1] if lines else (f"exit {self._proc.poll()}" if start == 0 and self._proc else "")

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                self._proc.stdin.close()
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
        self._proc = None


_FESTIVAL = FestivalSession()


def render(text: str, prosody: Prosody, voice: str | Voice, tmpdir: str | None = None) -> np.ndarray:
    """Speak `text` with `voice` and an explicit prosody: float32 mono 16 kHz, levelled and trimmed."""
    v = get_voice(voice)
    with tempfile.TemporaryDirectory(dir=tmpdir, prefix="synth-") as td:
        wav = os.path.join(td, "raw.wav")
        effects: list[str] = []
        if v.engine == "espeak-ng":
            _run(espeak_command(text, prosody, v, wav), f"espeak-ng ({v.id})")
        elif v.engine == "flite":
            _run(flite_command(text, prosody, v, wav), f"flite ({v.id})")
            if abs(prosody.pitch_st) > 1e-3:
                effects = ["pitch", f"{prosody.pitch_st * 100:.0f}"]
        else:
            _FESTIVAL.synth(text, festival_evals(prosody, v), wav)
            if v.hts and abs(prosody.pitch_st) > 1e-3:
                effects = ["pitch", f"{prosody.pitch_st * 100:.0f}"]
        if not os.path.isfile(wav) or os.path.getsize(wav) <= 44:
            raise SynthError(f"{v.id} produced no audio for {text!r}")
        x = sox_effects(wav, effects)
    x = trim_silence(x)
    return set_level(x, prosody.gain_db)


def synthesize(text: str, emotion: str, voice: str | Voice, rng: np.random.Generator | int | None = None,
               ) -> np.ndarray:
    """Speak `text` in `emotion` (a prosody drawn from that emotion's ranges): int16 mono at 16 kHz.

    voice: a voice id such as "espeak:en+m3" or "festival:kal_diphone"; rng: a numpy Generator or a seed.
    """
    v = get_voice(voice)
    require_tools((v.engine,))
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return to_int16(render(text, sample_prosody(emotion, rng), v))
