"""Corpus loaders: IEMOCAP (the real release layout), CSV/JSONL manifests, LOSO folds and count tables.

Every loader returns plain `Utterance` records, so the feature cache and the trainer never care where the
data came from. Raw labels go through a label set (fdrl_core.labels) or a raw->class dict; what does not
map is dropped (IEMOCAP) or rejected/filtered (manifests), and every drop is counted, never silent.
"""

from __future__ import annotations

import os
import random
import re
import sys
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from fdrl_core.cli import ArgumentParser
from fdrl_core.labels import IEMOCAP4, IEMOCAP6, LABEL_SETS, LabelSet
from fdrl_core.manifest import jsonl_rows, manifest_rows

# Predefined raw->class mappings. 4class is the literature's protocol (exc merged into hap, SPEC 8).
MAPPINGS: dict[str, LabelSet] = {"4class": IEMOCAP4, "6class": IEMOCAP6}
# The standard 4-class counts on the full release; the CLI compares a user's copy against them.
IEMOCAP4_EXPECTED = {"neutral": 1708, "happy": 1636, "angry": 1103, "sad": 1084}

Labels = LabelSet | Mapping[str, str] | Sequence[str] | str  # a set, raw->class dict, class list or name
TextSource = Mapping[str, str] | str | Path  # id->text dict or a JSONL file of {"id", "text"}


@dataclass(frozen=True)
class Utterance:
    """One labelled utterance; `meta` carries corpus extras (raw_label, engine, improvised, gold_text...)."""

    id: str
    path: str  # absolute wav path
    text: str
    label: str
    speaker: str
    session: str | None = None
    split: str | None = None
    meta: dict = field(default_factory=dict, hash=False)


def _natural(s: str) -> list:
    """Sort key so Session10 follows Session9 and Ses02M follows Ses01M."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))]


def _resolve_labels(labels: Labels | None) -> tuple[Callable[[str], str | None], list[str] | None]:
    """(raw -> class or None, class order) for any accepted label-set form; None accepts every label."""
    if labels is None:
        return (lambda raw: raw), None
    if isinstance(labels, str):
        found = MAPPINGS.get(labels) or LABEL_SETS.get(labels)
        if found is None:
            raise ValueError(f"unknown label set {labels!r}; known: {sorted({*MAPPINGS, *LABEL_SETS})}")
        labels = found
    if isinstance(labels, LabelSet):
        return labels.map, list(labels.classes)
    if isinstance(labels, Mapping):
        table = dict(labels)
        return table.get, list(dict.fromkeys(table.values()))
    allowed = list(dict.fromkeys(labels))
    return (lambda raw: raw if raw in allowed else None), allowed


# ----------------------------------------------------------------------------------------------- IEMOCAP

_SESSION_RE = re.compile(r"^Session(\d+)$")
# "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]": the consensus label line
_EVAL_RE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")
# "C-E1:\tNeutral state;\t()": one categorical annotator's votes
_VOTE_RE = re.compile(r"^C-([^:\s]+):\s*(.*)$")
# "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
_TRANS_RE = re.compile(r"^(\S+)\s*\[[^\]]*\]:\s?(.*)$")
_SPEAKER_RE = re.compile(r"^(Ses\d+)[FM]_.*_([FM])[^_]*$")


def _session_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    dirs = [d for d in root.iterdir()
            if _SESSION_RE.match(d.name) and (d / "dialog" / "EmoEvaluation").is_dir()]
    return sorted(dirs, key=lambda d: _natural(d.name))


def find_iemocap_root(path: str | Path) -> Path | None:
    """The folder holding Session1..5 (the path itself or its IEMOCAP_full_release child), else None."""
    p = Path(path).expanduser()
    for cand in (p, p / "IEMOCAP_full_release"):
        if _session_dirs(cand):
            return cand
    return None


def iemocap_speaker(uid: str) -> str:
    """'Ses01F_impro01_M003' -> 'Ses01M': the speaker letter is the utterance suffix's, not the dialog's."""
    m = _SPEAKER_RE.match(uid)
    if not m:
        raise ValueError(f"not an IEMOCAP utterance id: {uid!r}")
    return m.group(1) + m.group(2)


def _warn_missing(msg: str, missing: list[str], dropped: bool) -> None:
    if missing:
        warnings.warn(f"{msg} ({'dropped' if dropped else 'kept'}; first: {missing[0]})", stacklevel=3)


def _txt_files(folder: Path) -> list[Path]:
    # skip macOS "._*" resource forks, which some copies of the release carry next to every file
    return sorted(f for f in folder.glob("*.txt") if not f.name.startswith(".")) if folder.is_dir() else []


def _read_evaluation(path: Path) -> list[dict]:
    recs: list[dict] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if m := _EVAL_RE.match(line):
            start, end, uid, raw, vad = m.groups()
            recs.append({"id": uid, "raw_label": raw, "start": float(start), "end": float(end),
                         "vad": [float(x) for x in re.findall(r"\d+(?:\.\d+)?", vad)], "votes": {}})
        elif recs and (v := _VOTE_RE.match(line)):
            cats = v.group(2).split("(", 1)[0]
            recs[-1]["votes"][v.group(1)] = [c.strip() for c in cats.split(";") if c.strip()]
    return recs


def _read_gold_text(session_dir: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in _txt_files(session_dir / "dialog" / "transcriptions"):
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if m := _TRANS_RE.match(line.strip()):
                out[m.group(1)] = m.group(2).strip()
    return out


def load_iemocap(root: str | Path, *, labels: Labels = IEMOCAP4, improvised_only: bool = False,
                 sessions: Iterable[int | str] | None = None, transcripts: TextSource | None = None,
                 on_missing_transcript: str = "error", require_audio: bool = True) -> list[Utterance]:
    """IEMOCAP_full_release with the consensus (bracket-line) label; defaults give the standard 5531.

    Utterances whose label does not map are dropped; missing wavs are counted in a warning and dropped
    (kept with require_audio=False). `transcripts` swaps gold text for ASR text (see apply_transcripts).
    """
    base = find_iemocap_root(root)
    if base is None:
        raise ValueError(f"{root}: not an IEMOCAP tree; expected Session1..Session5/dialog/EmoEvaluation/"
                         "*.txt (the IEMOCAP_full_release folder)")
    base = Path(os.path.abspath(base))
    mapper, _ = _resolve_labels(labels)
    wanted = None if sessions is None else {s if isinstance(s, str) else f"Session{s}" for s in sessions}
    utts: list[Utterance] = []
    missing_wav: list[str] = []
    no_text: list[str] = []
    for sdir in _session_dirs(base):
        if wanted is not None and sdir.name not in wanted:
            continue
        gold = _read_gold_text(sdir)
        for ev in _txt_files(sdir / "dialog" / "EmoEvaluation"):
            dialog, improvised = ev.stem, "_impro" in ev.stem
            if improvised_only and not improvised:
                continue
            for rec in _read_evaluation(ev):
                uid, raw = rec["id"], rec["raw_label"]
                label = mapper(raw)
                if label is None or not _SPEAKER_RE.match(uid):
                    continue
                wav = sdir / "sentences" / "wav" / dialog / f"{uid}.wav"
                if not wav.is_file():
                    missing_wav.append(uid)
                    if require_audio:
                        continue
                if uid not in gold:
                    no_text.append(uid)
                meta = {"raw_label": raw, "dialog": dialog, "improvised": improvised, "start": rec["start"],
                        "end": rec["end"], "vad": rec["vad"], "votes": rec["votes"]}
                utts.append(Utterance(id=uid, path=str(wav), text=gold.get(uid, ""), label=label,
                                      speaker=iemocap_speaker(uid), session=sdir.name, meta=meta))
    _warn_missing(f"IEMOCAP {base}: {len(missing_wav)} labelled utterances have no wav under "
                  "Session*/sentences/wav", missing_wav, require_audio)
    if no_text:
        warnings.warn(f"IEMOCAP {base}: {len(no_text)} utterances have no transcription line (text left "
                      f"empty; first: {no_text[0]})", stacklevel=2)
    if transcripts is not None:
        utts = apply_transcripts(utts, transcripts, on_missing=on_missing_transcript)
    return utts


# ----------------------------------------------------------------------------------------- ASR transcripts

def read_transcripts(src: TextSource) -> dict[str, str]:
    """id -> text from a dict or a JSONL file of {"id", "text"} rows (e.g. faster-whisper output)."""
    if isinstance(src, Mapping):
        return {str(k): str(v) for k, v in src.items()}
    out: dict[str, str] = {}
    for n, row in jsonl_rows(Path(src)):
        if "id" not in row or "text" not in row:
            raise ValueError(f"{Path(src).name} line {n}: expected keys 'id' and 'text'")
        out[str(row["id"])] = str(row["text"] or "")
    return out


def apply_transcripts(utts: Sequence[Utterance], transcripts: TextSource, *,
                      on_missing: str = "error") -> list[Utterance]:
    """Swap gold text for ASR text, the condition the product runs in; gold stays in meta["gold_text"].

    on_missing: "error" (default: no silent mix of gold and ASR text), "gold" (keep gold, warn) or "drop".
    """
    if on_missing not in ("error", "gold", "drop"):
        raise ValueError(f"on_missing must be 'error', 'gold' or 'drop', not {on_missing!r}")
    table = read_transcripts(transcripts)
    out: list[Utterance] = []
    missing: list[str] = []
    for u in utts:
        if u.id in table:
            asr = table[u.id]
            out.append(replace(u, text=asr, meta={**u.meta, "gold_text": u.text, "asr_text": asr}))
        else:
            missing.append(u.id)
            if on_missing == "gold":
                out.append(u)
    if missing:
        msg = f"{len(missing)} of {len(utts)} utterances have no ASR transcript (first: {missing[0]})"
        if on_missing == "error":
            raise ValueError(f"{msg}; pass on_missing='gold' or 'drop' to go on")
        warnings.warn(f"{msg}; {'kept gold text' if on_missing == 'gold' else 'dropped'}", stacklevel=2)
    return out


# ---------------------------------------------------------------------------------------------- manifests

_REQUIRED = ("path", "text", "label")
_OPTIONAL = ("id", "speaker", "session", "split")


def _opt(row: dict, key: str) -> str | None:
    v = row.get(key)
    return None if v is None or str(v).strip() == "" else str(v).strip()


def load_manifest(path: str | Path, *, labels: Labels | None = None, unknown_labels: str = "error",
                  transcripts: TextSource | None = None, on_missing_transcript: str = "error",
                  require_audio: bool = True) -> list[Utterance]:
    """Any corpus as CSV/JSONL rows: path, text, label required; id, speaker, session, split optional.

    Relative paths resolve against the manifest's folder; other keys go to meta. unknown_labels: "error"
    or "drop" (counted in a warning). labels=None keeps every label as written.
    """
    if unknown_labels not in ("error", "drop"):
        raise ValueError(f"unknown_labels must be 'error' or 'drop', not {unknown_labels!r}")
    mpath = Path(os.path.abspath(Path(path).expanduser()))
    if not mpath.is_file():
        raise ValueError(f"{path}: manifest file not found")
    mapper, classes = _resolve_labels(labels)
    utts: list[Utterance] = []
    unknown: Counter[str] = Counter()
    missing_wav: list[str] = []
    seen: dict[str, int] = {}
    for n, row in manifest_rows(mpath, _REQUIRED):
        where = f"{mpath.name} line {n}"
        for col in _REQUIRED:
            if row.get(col) is None:
                raise ValueError(f"{where}: missing required column {col!r}")
            if col != "text" and str(row[col]).strip() == "":
                raise ValueError(f"{where}: empty value for required column {col!r}")
        raw = str(row["label"]).strip()
        label = mapper(raw)
        if label is None:
            if unknown_labels == "error":
                raise ValueError(f"{where}: label {raw!r} is not in the label set {classes}; "
                                 "--drop-unknown-labels (unknown_labels='drop') skips such rows")
            unknown[raw] += 1
            continue
        rel = str(row["path"]).strip()
        wav = os.path.normpath(os.path.join(mpath.parent, os.path.expanduser(rel)))
        uid = _opt(row, "id") or os.path.splitext(rel)[0].replace(os.sep, "/")
        if uid in seen:
            raise ValueError(f"{where}: duplicate id {uid!r} (first on line {seen[uid]})")
        seen[uid] = n
        if not os.path.isfile(wav):
            missing_wav.append(rel)
            if require_audio:
                continue
        meta = {k: v for k, v in row.items() if k not in _REQUIRED + _OPTIONAL}
        meta.setdefault("raw_label", raw)
        utts.append(Utterance(id=uid, path=wav, text=str(row["text"]), label=label,
                              speaker=_opt(row, "speaker") or "unknown", session=_opt(row, "session"),
                              split=_opt(row, "split"), meta=meta))
    if unknown:
        warnings.warn(f"{mpath.name}: dropped {sum(unknown.values())} rows with labels outside {classes}: "
                      f"{dict(unknown)}", stacklevel=2)
    _warn_missing(f"{mpath.name}: {len(missing_wav)} audio files are missing", missing_wav, require_audio)
    if transcripts is not None:
        utts = apply_transcripts(utts, transcripts, on_missing=on_missing_transcript)
    return utts


def load_corpus(spec: str | Path | Mapping, **kwargs) -> list[Utterance]:
    """One entry point for configs and the CLI: the path's shape picks the loader.

    spec: an IEMOCAP folder (Session1..5 inside), a .csv/.jsonl manifest, a folder with manifest.jsonl or
    manifest.csv, or a dict {"path": ..., "kind": "iemocap"|"manifest" (optional), **loader options}.
    """
    kind = None
    if isinstance(spec, Mapping):
        if "path" not in spec:
            raise ValueError(f"corpus spec needs a 'path' key: {dict(spec)}")
        kwargs = {**{k: v for k, v in spec.items() if k not in ("path", "kind")}, **kwargs}
        kind, spec = spec.get("kind"), spec["path"]
    p = Path(spec).expanduser()
    if kind == "iemocap" or (kind is None and p.is_dir() and find_iemocap_root(p)):
        return load_iemocap(p, **kwargs)
    if kind not in (None, "manifest"):
        raise ValueError(f"unknown corpus kind {kind!r}; expected 'iemocap' or 'manifest'")
    if p.is_dir():
        for name in ("manifest.jsonl", "manifest.csv"):
            if (p / name).is_file():
                return load_manifest(p / name, **kwargs)
        raise ValueError(f"{spec}: expected an IEMOCAP tree (Session1..5/dialog/EmoEvaluation) or a folder "
                         "with manifest.jsonl / manifest.csv")
    if p.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        return load_manifest(p, **kwargs)
    raise ValueError(f"{spec}: not a corpus; expected an IEMOCAP folder, a .csv/.jsonl manifest, or a folder "
                     "with manifest.jsonl")


# ---------------------------------------------------------------------------------------- folds and splits

def loso_folds(utts: Sequence[Utterance]) -> Iterator[tuple[str, list[Utterance], list[Utterance]]]:
    """Leave-one-session-out: (session, train, test) per session, the speaker-independent IEMOCAP protocol.

    Carve model-selection data with split_validation(train, key=fold_name), never from test.
    """
    if any(u.session is None for u in utts):
        raise ValueError("leave-one-session-out needs a session on every utterance (manifest column session)")
    sessions = sorted({u.session for u in utts}, key=_natural)
    if len(sessions) < 2:
        raise ValueError(f"leave-one-session-out needs at least 2 sessions, found {sessions}")
    for s in sessions:
        train = [u for u in utts if u.session != s]
        test = [u for u in utts if u.session == s]
        shared = {u.speaker for u in train} & {u.speaker for u in test}
        if shared:
            warnings.warn(f"fold {s} is not speaker-independent: speakers {sorted(shared)} are in train and "
                          "test", stacklevel=2)
        yield s, train, test


def split_validation(train: Sequence[Utterance], *, mode: str = "speaker", fraction: float = 0.1,
                     seed: int = 0, key: str = "", speaker: str | None = None,
                     ) -> tuple[list[Utterance], list[Utterance]]:
    """(train, val) from the training sessions only, for honest model selection (SPEC 8).

    mode "speaker": hold out one whole speaker (`speaker`, else one picked deterministically from key+seed,
    so each fold gets its own). mode "fraction": hold out `fraction` of each speaker's utterances,
    stratified by label.
    """
    if mode == "speaker":
        speakers = sorted({u.speaker for u in train}, key=_natural)
        if speaker is None:
            if len(speakers) < 2:
                raise ValueError(f"holding out a speaker needs 2+ training speakers, found {speakers}")
            speaker = speakers[(zlib.crc32(key.encode()) + seed) % len(speakers)]
        elif speaker not in speakers:
            raise ValueError(f"validation speaker {speaker!r} is not among the training speakers {speakers}")
        return [u for u in train if u.speaker != speaker], [u for u in train if u.speaker == speaker]
    if mode == "fraction":
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be in (0, 1), not {fraction}")
        rng = random.Random(f"{key}:{seed}")  # str seeds hash with sha512: stable across runs
        groups: dict[str, list[Utterance]] = defaultdict(list)
        for u in train:
            groups[u.speaker].append(u)
        val_ids: set[str] = set()
        for spk in sorted(groups):
            g = sorted(groups[spk], key=lambda u: u.id)
            rng.shuffle(g)
            g.sort(key=lambda u: u.label)  # stable: shuffled within each label
            n_val = max(1, round(fraction * len(g))) if len(g) > 1 else 0
            # evenly spaced picks over the label-sorted list = proportional stratification by label
            val_ids.update(g[int((i + 0.5) * len(g) / n_val)].id for i in range(n_val))
        return [u for u in train if u.id not in val_ids], [u for u in train if u.id in val_ids]
    raise ValueError(f"mode must be 'speaker' or 'fraction', not {mode!r}")


# ------------------------------------------------------------------------------------------------- counts

def _group_of(u: Utterance, by: str | None) -> str:
    if by is None:
        return "all"
    v = getattr(u, by) if by in ("split", "session", "speaker", "label") else u.meta.get(by)
    return "-" if v is None else str(v)


def _default_by(utts: Sequence[Utterance]) -> str | None:
    return "split" if any(u.split for u in utts) else "session" if any(u.session for u in utts) else None


def split_counts(utts: Sequence[Utterance], by: str | None = None) -> dict[str, dict[str, int]]:
    """{group: {label: count}}; by = split | session | speaker | a meta key (default: split, else session)."""
    by = by or _default_by(utts)
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for u in utts:
        out[_group_of(u, by)][u.label] += 1
    return {g: dict(out[g]) for g in sorted(out, key=_natural)}


def format_counts(utts: Sequence[Utterance], by: str | None = None,
                  classes: Sequence[str] | None = None) -> str:
    """A plain-text table of label counts per group with totals, for logs and the CLI."""
    by = by or _default_by(utts)
    counts = split_counts(utts, by)
    present = {lab for c in counts.values() for lab in c}
    cols = [c for c in (classes or []) if c in present] + sorted(present - set(classes or []))
    rows = [[g] + [str(c.get(k, 0)) for k in cols] + [str(sum(c.values()))] for g, c in counts.items()]
    if len(rows) > 1:
        totals = [str(sum(c.get(k, 0) for c in counts.values())) for k in cols]
        rows.append(["total", *totals, str(len(utts))])
    table = [[by or "corpus"] + cols + ["total"]] + rows
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)])
             for r in table]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m train.corpora PATH`: load a corpus and print its label counts, to check a copy."""
    ap = ArgumentParser(prog="python -m train.corpora", description=main.__doc__)
    ap.add_argument("path", help="IEMOCAP_full_release folder, a .csv/.jsonl manifest, or a folder with one")
    ap.add_argument("--labels", help="label set: 4class (IEMOCAP default) | 6class | iemocap4 ...; "
                                     "manifests keep their labels when omitted")
    ap.add_argument("--improvised-only", action="store_true", help="IEMOCAP: only the improvised dialogs")
    ap.add_argument("--by", help="rows: split | session | speaker | a meta key (default: split/session)")
    ap.add_argument("--transcripts", help="JSONL of {id, text} (ASR output) to use instead of gold text")
    ap.add_argument("--drop-unknown", action="store_true", help="manifest: filter labels outside --labels")
    args = ap.parse_args(argv)
    is_iemocap = Path(args.path).is_dir() and find_iemocap_root(args.path) is not None
    kwargs: dict = {}
    if args.labels:
        kwargs["labels"] = args.labels
    if args.transcripts:
        kwargs.update(transcripts=args.transcripts, on_missing_transcript="gold")
    if is_iemocap:
        kwargs["improvised_only"] = args.improvised_only
    elif args.drop_unknown:
        kwargs["unknown_labels"] = "drop"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            utts = load_corpus(args.path, **kwargs)
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    _, classes = _resolve_labels(args.labels or (IEMOCAP4 if is_iemocap else None))
    print(format_counts(utts, by=args.by, classes=classes))
    if is_iemocap:
        raw = Counter(u.meta["raw_label"] for u in utts)
        print("raw labels: " + ", ".join(f"{k} {v}" for k, v in raw.most_common()))
        if (args.labels or "4class") in ("4class", "iemocap4") and not args.improvised_only:
            got = dict(Counter(u.label for u in utts))
            verdict = "matches" if got == IEMOCAP4_EXPECTED else "DIFFERS from"
            print(f"{verdict} the standard IEMOCAP 4-class counts (5531: neutral 1708, happy+excited 1636, "
                  f"angry 1103, sad 1084)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
