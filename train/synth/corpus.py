"""Corpus generation: plan every utterance in the parent, synthesize in a small process pool, write the
manifest. Planning up front (all random draws from seeded generators, in a fixed order) is what makes a
corpus reproducible regardless of worker count or scheduling.

Carriers (which modality holds the emotion):
  both   -- emotional wording, spoken with that emotion's prosody;
  speech -- neutral wording, emotional prosody (only the voice tells);
  text   -- emotional wording, neutral prosody (only the words tell).
A neutral label is neutral wording + neutral voice whatever the carrier, so neither modality alone can
separate neutral from the one-modality carriers of the other emotions.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import SAMPLE_RATE, to_int16
from .augment import AugmentConfig, AugmentPlan, apply_augment, sample_augment
from .engines import render
from .prosody import LABELS, Prosody, sample_prosody
from .sentences import Sentence, sentence_bank
from .splits import SPLITS, SplitFractions, split_sentences, split_voices
from .voices import SynthError, Voice, parse_engines, select_voices

CARRIERS = ("both", "speech", "text")
MANIFEST = "manifest.jsonl"
CORPUS_JSON = "corpus.json"
FORMAT_VERSION = 1
TINY = {"n_sentences": 12, "n_utterances": 40}  # the --tiny preset


@dataclass
class SynthConfig:
    """What to generate. The defaults make ~5.1k files (3000 utterances + 1 augmented copy per training
    utterance) in a few minutes on 2 cores; `SynthConfig.tiny()` is the seconds-long preset for tests."""
    out: str | Path = "data/synth"
    n_sentences: int = 400                    # distinct sentences per wording (neutral, happy, angry, sad)
    n_utterances: int = 3000                  # spoken utterances over all splits, before augmentation
    engines: tuple[str, ...] = ("espeak-ng", "festival")
    voices: tuple[str, ...] | None = None     # voice ids; None = every installed catalogue voice
    test_engine: str | None = None            # test = this engine's voices only, train/val = the others
    seed: int = 0
    augment: int = 1                          # augmented copies per training utterance
    val_fraction: float = 0.15                # of voices, sentences and utterances
    test_fraction: float = 0.15
    carrier_cycle: tuple[str, ...] = ("both", "speech", "both", "text")  # per label, in turn
    augment_config: AugmentConfig = field(default_factory=AugmentConfig)
    workers: int = 2
    overwrite: bool = False
    progress: bool = True

    @classmethod
    def tiny(cls, out: str | Path, **kw) -> SynthConfig:
        """~40 utterances (+ augmented copies): a few seconds, still every label, carrier and split."""
        return cls(out=out, **{**TINY, **kw})

    def validate(self) -> SynthConfig:
        engines = parse_engines(self.engines)
        if self.test_engine is not None:
            te = parse_engines(self.test_engine)[0]
            if te not in engines:
                raise SynthError(f"--test-engine {te} is not among --engines {','.join(engines)}")
        else:
            te = None
        if self.n_sentences < 3:
            raise SynthError("--n-sentences must be at least 3 (one per split)")
        if self.n_utterances < 12:
            raise SynthError("--n-utterances must be at least 12")
        if self.augment < 0:
            raise SynthError("--augment must be >= 0")
        if not (0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5):
            raise SynthError("validation and test fractions must be between 0 and 0.5")
        bad = [c for c in self.carrier_cycle if c not in CARRIERS]
        if bad or not self.carrier_cycle:
            raise SynthError(f"carrier_cycle must be made of {CARRIERS}, got {self.carrier_cycle}")
        return replace(self, engines=engines, test_engine=te, workers=max(1, int(self.workers)),
                       voices=tuple(self.voices) if self.voices else None)


@dataclass(frozen=True)
class Job:
    """One spoken utterance and its augmented copies, fully decided before any audio is made."""
    id: str
    split: str
    label: str
    carrier: str
    voice: Voice
    sentence: Sentence
    prosody: Prosody
    voice_emotion: str
    augments: tuple[AugmentPlan, ...] = ()


def plan_jobs(cfg: SynthConfig, voices: list[Voice]) -> tuple[list[Job], dict]:
    """All utterances in manifest order, plus a description of the split (for corpus.json). Only the
    voices of cfg.engines are used."""
    voices = [v for v in voices if v.engine in cfg.engines]
    fr = SplitFractions(cfg.val_fraction, cfg.test_fraction)
    bank = sentence_bank(cfg.n_sentences)
    voice_split = split_voices(voices, cfg.seed, fr, cfg.test_engine)
    sentence_split = split_sentences(bank, cfg.seed, fr)
    sizes = {"val": max(4, int(round(cfg.n_utterances * fr.val))),
             "test": max(4, int(round(cfg.n_utterances * fr.test)))}
    sizes["train"] = cfg.n_utterances - sizes["val"] - sizes["test"]
    jobs: list[Job] = []
    for s_index, split in enumerate(SPLITS):
        pick = np.random.default_rng([cfg.seed, 9000, s_index])
        split_voice_list = voice_split[split]
        if not split_voice_list:
            raise SynthError(f"no voices left for the {split} split")
        per_label: Counter[str] = Counter()
        for i in range(sizes[split]):
            label = LABELS[i % len(LABELS)]
            carrier = cfg.carrier_cycle[per_label[label] % len(cfg.carrier_cycle)]
            per_label[label] += 1
            wording = "neutral" if carrier == "speech" else label
            voice_emotion = "neutral" if carrier == "text" else label
            pool = sentence_split[split][wording]
            # engine first, then a voice of it: every engine gets an equal share however many voices it has
            # (espeak-ng has hundreds of voice x variant combinations, festival three)
            engines = sorted({v.engine for v in split_voice_list})
            engine = engines[int(pick.integers(len(engines)))]
            of_engine = [v for v in split_voice_list if v.engine == engine]
            voice = of_engine[int(pick.integers(len(of_engine)))]
            sentence = pool[int(pick.integers(len(pool)))]
            prosody = sample_prosody(voice_emotion, np.random.default_rng([cfg.seed, s_index, i, 1]))
            augments: tuple[AugmentPlan, ...] = ()
            if split == "train" and cfg.augment:
                arng = np.random.default_rng([cfg.seed, s_index, i, 2])
                augments = tuple(sample_augment(arng, cfg.augment_config) for _ in range(cfg.augment))
            jobs.append(Job(f"{split}-{i:05d}", split, label, carrier, voice, sentence, prosody,
                            voice_emotion, augments))
    info = {"voices": {s: [v.id for v in voice_split[s]] for s in SPLITS},
            "sentences": {s: {w: len(p) for w, p in sorted(sentence_split[s].items())} for s in SPLITS}}
    return jobs, info


def _row(job: Job, uid: str, rel: str, n_samples: int, aug: AugmentPlan | None) -> dict:
    return {"id": uid, "path": rel, "text": job.sentence.text, "label": job.label, "speaker": job.voice.id,
            "engine": job.voice.engine, "sentence_id": job.sentence.sentence_id, "carrier": job.carrier,
            "split": job.split, "augmented": aug is not None, "aug": aug.describe() if aug else None,
            "source_id": job.id if aug else None, "duration": round(n_samples / SAMPLE_RATE, 3),
            "voice_emotion": job.voice_emotion, "prosody": job.prosody.as_dict()}


def _write(out: Path, rel: str, x: np.ndarray) -> int:
    pcm = to_int16(x)
    sf.write(str(out / rel), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return len(pcm)


def run_job(job: Job, out: str) -> list[dict]:
    """Worker: synthesize, write the wav and its augmented copies, return their manifest rows."""
    outp = Path(out)
    x = render(job.sentence.text, job.prosody, job.voice)
    rel = f"wav/{job.split}/{job.id}.wav"
    rows = [_row(job, job.id, rel, _write(outp, rel, x), None)]
    for k, plan in enumerate(job.augments, 1):
        uid = f"{job.id}-aug{k}"
        arel = f"wav/{job.split}/{uid}.wav"
        rows.append(_row(job, uid, arel, _write(outp, arel, apply_augment(x, plan)), plan))
    return rows


def _run_job_star(args: tuple[Job, str]) -> list[dict]:
    return run_job(*args)


def _init_worker() -> None:
    """Ctrl-C goes to the parent only, which stops the pool: one message instead of a traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def tool_versions() -> dict[str, str]:
    """First line of each program's version output, recorded so a corpus says what made it."""
    out = {}
    for name, cmd in (("espeak-ng", ["espeak-ng", "--version"]), ("festival", ["festival", "--version"]),
                      ("sox", ["sox", "--version"])):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=20)
            line = (res.stdout or res.stderr).strip().splitlines()
            out[name] = line[0].strip() if line else "?"
        except (OSError, subprocess.TimeoutExpired):
            out[name] = "not installed"
    return out


def _prepare_out(out: Path, overwrite: bool) -> None:
    if (out / MANIFEST).exists() or (out / "wav").exists():
        if not overwrite:
            raise SynthError(f"{out} already holds a corpus; pass --overwrite to replace it")
        shutil.rmtree(out / "wav", ignore_errors=True)
        for name in (MANIFEST, CORPUS_JSON):
            if (out / name).exists():
                (out / name).unlink()
    for split in SPLITS:
        (out / "wav" / split).mkdir(parents=True, exist_ok=True)


def summarize(rows: list[dict]) -> dict:
    """Counts per split / label / engine / carrier and hours, for corpus.json and the CLI's last line."""
    def count(key, rs):
        return dict(sorted(Counter(str(r[key]) for r in rs).items()))

    return {
        "utterances": len(rows),
        "augmented": sum(r["augmented"] for r in rows),
        "hours": round(sum(r["duration"] for r in rows) / 3600, 3),
        "by_split": {s: len([r for r in rows if r["split"] == s]) for s in SPLITS},
        "by_split_label": {s: count("label", [r for r in rows if r["split"] == s]) for s in SPLITS},
        "by_split_carrier": {s: count("carrier", [r for r in rows if r["split"] == s]) for s in SPLITS},
        "by_split_engine": {s: count("engine", [r for r in rows if r["split"] == s]) for s in SPLITS},
        "by_engine": count("engine", rows),
        "speakers": len({r["speaker"] for r in rows}),
        "sentences": len({r["sentence_id"] for r in rows}),
    }


def generate_corpus(cfg: SynthConfig) -> Path:
    """Generate the corpus described by `cfg`; returns the path of its manifest.jsonl."""
    cfg = cfg.validate()
    voices = select_voices(cfg.engines, list(cfg.voices) if cfg.voices else None)
    jobs, split_info = plan_jobs(cfg, voices)
    out = Path(cfg.out)
    _prepare_out(out, cfg.overwrite)
    n_files = sum(1 + len(j.augments) for j in jobs)
    from tqdm import tqdm

    rows: list[dict] = []
    args = [(j, str(out)) for j in jobs]
    with tqdm(total=n_files, desc="synth", unit="wav", disable=not cfg.progress, dynamic_ncols=True) as bar:
        if cfg.workers == 1:
            for r in map(_run_job_star, args):
                rows.extend(r)
                bar.update(len(r))
        else:
            # spawn, not fork: callers (a trainer, a notebook) may hold threads or torch state
            with multiprocessing.get_context("spawn").Pool(cfg.workers, initializer=_init_worker) as pool:
                for r in pool.imap(_run_job_star, args, chunksize=4):
                    rows.extend(r)
                    bar.update(len(r))
    tmp = out / (MANIFEST + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out / MANIFEST)
    meta = {k: v for k, v in asdict(cfg).items() if k not in ("out", "workers", "progress", "overwrite")}
    corpus = {"format": FORMAT_VERSION, "generator": "train.synth", "seed": cfg.seed, "args": meta,
              "labels": list(LABELS), "carriers": list(CARRIERS), "splits": split_info,
              "counts": summarize(rows), "tools": tool_versions()}
    (out / CORPUS_JSON).write_text(json.dumps(corpus, indent=2) + "\n", encoding="utf-8")
    return out / MANIFEST



