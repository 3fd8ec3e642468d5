"""The voice catalogue: which synthesizer voices exist, how to find out whether they are installed.

A voice is engine + voice variant (e.g. "espeak:en+m3"); it is the unit the corpus splits by, so a model is
always tested on voices it never heard. Gender is recorded so the split can keep both in every part.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

# flite (CMU Flite, Debian `flite`) is opt-in: not in the default corpus, so it can serve as a synthesizer
# a model never heard (`--engines flite`), or as a third training family
ENGINES = ("espeak-ng", "festival", "flite")
# voice-id prefix per engine ("espeak:en+m3", "festival:kal_diphone", "flite:awb")
PREFIX = {"espeak-ng": "espeak", "festival": "festival", "flite": "flite"}
FESTIVAL_VOICE_DIRS = ("/usr/share/festival/voices", "/usr/lib/festival/voices")
ESPEAK_DATA_DIRS = ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
                    "/usr/share/espeak-ng-data", "/usr/lib/espeak-ng-data")


class SynthError(RuntimeError):
    """A problem the user can fix (missing program or voice, bad option); printed as one line by the CLI."""


@dataclass(frozen=True)
class Voice:
    id: str                 # "espeak:en-us+f2" -- the manifest's `speaker`
    engine: str             # espeak-ng | festival
    name: str               # engine's own name: "en-us+f2", "kal_diphone"
    gender: str             # m | f
    apt: str                # the Debian package that provides it
    f0_mean: float = 0.0    # festival diphone voices: the voice's own int_lr target_f0_mean / std
    f0_std: float = 0.0
    hts: bool = False       # festival HTS voice: rate via the HTS engine, pitch via sox (no F0 model hook)


def _espeak(name: str, gender: str) -> Voice:
    return Voice(id=f"espeak:{name}", engine="espeak-ng", name=name, gender=gender, apt="espeak-ng")


# The static fallback (espeak-ng not installed here, e.g. on a machine that only trains): accents x variants.
_ESPEAK_FALLBACK = (
    _espeak("en+m1", "m"), _espeak("en-us+m2", "m"), _espeak("en+m3", "m"),
    _espeak("en-gb-scotland+m4", "m"), _espeak("en-us+m6", "m"), _espeak("en+m7", "m"),
    _espeak("en-gb-x-rp+m8", "m"),
    _espeak("en+f1", "f"), _espeak("en-us+f2", "f"), _espeak("en+f3", "f"), _espeak("en-gb+f4", "f"),
    _espeak("en-us+f5", "f"), _espeak("en+Annie", "f"), _espeak("en-us+linda", "f"),
)


def _espeak_list(arg: str) -> list[tuple[str, str, str]]:
    """(language, gender m|f|?, voice file) rows of `espeak-ng --voices=...`; [] when it is not installed."""
    if shutil.which("espeak-ng") is None:
        return []
    try:
        out = subprocess.run(["espeak-ng", arg], capture_output=True, text=True, check=False, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            gender = cols[2].rsplit("/", 1)[-1].lower()
            rows.append((cols[1], gender if gender in ("m", "f") else "?", cols[4]))
    return rows


def discover_espeak_voices() -> tuple[Voice, ...]:
    """Every English espeak-ng language (its own formant voices, not the MBROLA ones, which need mbrola)
    combined with every variant (`espeak-ng --voices=variant`), plus each language's default voice: several
    hundred voices, so a model sees far more voice qualities than any single engine setting gives."""
    langs = sorted({lang for lang, _, f in _espeak_list("--voices=en")
                    if lang.startswith("en") and not f.startswith("mb/")})
    variants = sorted({(f.rsplit("/", 1)[-1], g) for _, g, f in _espeak_list("--voices=variant")
                       if f.startswith("!v/")})
    if not langs or not variants:
        return _ESPEAK_FALLBACK
    voices = [_espeak(lang, "m") for lang in langs]
    voices += [_espeak(f"{lang}+{v}", g if g in ("m", "f") else "m") for lang in langs for v, g in variants]
    return tuple(voices)


ESPEAK_VOICES = discover_espeak_voices()
FESTIVAL_VOICES = (
    Voice("festival:kal_diphone", "festival", "kal_diphone", "m", "festvox-kallpc16k", 105.0, 14.0),
    Voice("festival:ked_diphone", "festival", "ked_diphone", "m", "festvox-kdlpc16k", 105.0, 15.0),
    Voice("festival:cmu_us_slt_arctic_hts", "festival", "cmu_us_slt_arctic_hts", "f", "festvox-us-slt-hts",
          hts=True),
)
# flite's built-in voices: clustergen awb (Scottish English), rms (US), slt (US) and the diphone kal16
FLITE_VOICES = (
    Voice("flite:awb", "flite", "awb", "m", "flite"), Voice("flite:rms", "flite", "rms", "m", "flite"),
    Voice("flite:slt", "flite", "slt", "f", "flite"), Voice("flite:kal16", "flite", "kal16", "m", "flite"),
)
ALL_VOICES = ESPEAK_VOICES + FESTIVAL_VOICES + FLITE_VOICES
BY_ID = {v.id: v for v in ALL_VOICES}


def parse_engines(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'espeak-ng,festival' -> ('espeak-ng', 'festival'); 'espeak' is accepted for espeak-ng."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [s.strip() for s in spec]
    out = []
    for s in items:
        if not s:
            continue
        s = {"espeak": "espeak-ng"}.get(s, s)
        if s not in ENGINES:
            raise SynthError(f"unknown engine {s!r}; choose from {','.join(ENGINES)}")
        if s not in out:
            out.append(s)
    if not out:
        raise SynthError("no engine selected")
    return tuple(out)


def get_voice(voice: str | Voice) -> Voice:
    """A catalogue voice by id; also accepts 'espeak-ng:NAME' and any espeak 'lang+variant' id not listed."""
    if isinstance(voice, Voice):
        return voice
    if voice in BY_ID:
        return BY_ID[voice]
    engine, _, name = voice.partition(":")
    if engine in ("espeak", "espeak-ng") and name:
        return BY_ID.get(f"espeak:{name}") or Voice(f"espeak:{name}", "espeak-ng", name, "?", "espeak-ng")
    raise SynthError(f"unknown voice {voice!r}; known: {', '.join(BY_ID)}")


def _tool(name: str, apt: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SynthError(f"{name} is not installed (apt-get install {apt})")
    return path


def require_tools(engines: tuple[str, ...]) -> None:
    """Fail early, with the apt package to install, when a program the engines need is missing."""
    if "espeak-ng" in engines:
        _tool("espeak-ng", "espeak-ng")
    if "festival" in engines:
        _tool("festival", "festival")
    if "flite" in engines:
        _tool("flite", "flite")
    _tool("sox", "sox")


@functools.cache
def _espeak_data_dir() -> str | None:
    for d in ESPEAK_DATA_DIRS:
        if os.path.isdir(os.path.join(d, "voices", "!v")):
            return d
    return None


@functools.cache
def _espeak_languages() -> frozenset[str]:
    """Language names and voice-file names espeak-ng lists (lower case), e.g. en-gb, en-us, en-gb-x-rp."""
    out = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=False).stdout
    names = set()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 4:
            names.update((cols[1].lower(), cols[4].rsplit("/", 1)[-1].lower()))
    return frozenset(names)


@functools.cache
def _flite_voices() -> frozenset[str]:
    if shutil.which("flite") is None:
        return frozenset()
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
    return frozenset(out.replace("Voices available:", "").split())


def is_installed(voice: Voice) -> bool:
    """espeak: the language and variant files exist (espeak-ng silently falls back otherwise);
    festival: the voice folder exists; flite: `flite -lv` lists it."""
    if voice.engine == "flite":
        return voice.name in _flite_voices()
    if voice.engine == "espeak-ng":
        if shutil.which("espeak-ng") is None:
            return False
        lang, _, variant = voice.name.partition("+")
        if lang.lower() not in _espeak_languages():
            return False
        data = _espeak_data_dir()
        return not variant or data is None or os.path.isfile(os.path.join(data, "voices", "!v", variant))
    if shutil.which("festival") is None:
        return False
    return any(os.path.isdir(os.path.join(d, lang, voice.name))
               for d in FESTIVAL_VOICE_DIRS if os.path.isdir(d) for lang in os.listdir(d))


def select_voices(engines: tuple[str, ...], voices: list[str] | None = None) -> list[Voice]:
    """The voices to use: the requested ids (all must be installed) or every installed catalogue voice
    of the engines; a missing festival voice is an error that names its apt package."""
    require_tools(engines)
    if voices:
        chosen = [get_voice(v) for v in voices]
        for v in chosen:
            if v.engine not in engines:
                raise SynthError(f"voice {v.id} belongs to engine {v.engine}, which is not in --engines")
            if not is_installed(v):
                if v.engine == "espeak-ng" and shutil.which("espeak-ng"):
                    raise SynthError(f"espeak-ng has no voice {v.name} (language+variant; see --list-voices "
                                     "and espeak-ng --voices=en)")
                raise SynthError(f"voice {v.id} is not installed (apt-get install {v.apt})")
        return list(dict.fromkeys(chosen))
    chosen = []
    for v in ALL_VOICES:
        if v.engine not in engines:
            continue
        if not is_installed(v):
            if v.engine in ("festival", "flite"):
                raise SynthError(f"{v.engine} voice {v.name} is not installed (apt-get install {v.apt}), "
                                 "or pass --voices to use the installed ones")
            continue
        chosen.append(v)
    return chosen
