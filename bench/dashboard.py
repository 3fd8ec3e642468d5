"""The dashboard under load, in a real browser: publish -> page delay and page responsiveness for 1 and N streams.

Each stream is a synthetic publisher that sends what stream.run sends for the bundled demo (its eight
utterances, timing and labels from stream/demo/demo.json; partial transcripts and provisional emotions
every 0.5 s of speech, a status heartbeat every second), built with the real message factory so every
message is schema-valid. No models run, so the numbers are the dashboard's own cost. The page is
`python -m stream.dashboard` in its own process, opened in headless Chromium (Playwright + the system
chromium). Measured in the page: the delay from each message's wall_time to its arrival, the time
view.render() takes, and the longest gap between animation frames (a frozen page shows up there).

    python -m bench dashboard --streams 8 --seconds 36
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import DEFAULT_OUT, free_endpoint, ratio, summary, write_results

REPO = Path(__file__).resolve().parent.parent
DEMO_SCRIPT = REPO / "stream" / "demo" / "demo.json"


def find_chromium() -> str | None:
    """The system Chromium (Debian: chromium), or $FDRL_CHROMIUM."""
    for c in (os.environ.get("FDRL_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
              "/usr/bin/chromium"):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def launch_args() -> list[str]:
    args = ["--disable-dev-shm-usage", "--disable-gpu"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return args


@dataclass
class Utterance:
    start: float
    end: float
    label: str
    text: str


def demo_script() -> list[Utterance]:
    d = json.loads(DEMO_SCRIPT.read_text())
    return [Utterance(u["start"], u["end"], u["emotion"], u["text"]) for u in d["utterances"]]


def _scores(label: str, labels: list[str], sure: float) -> dict[str, float]:
    rest = (1.0 - sure) / (len(labels) - 1)
    return {k: (sure if k == label else rest) for k in labels}


def synthetic_messages(stream_id: str, script: list[Utterance], labels=("neutral", "happy", "angry", "sad"),
                       partial_every: float = 0.5):
    """(audio time, topic, build) in send order; `build()` makes the message when it is sent (fresh wall_time)."""
    from stream.messages import MessageFactory

    f = MessageFactory(stream_id)
    labels = list(labels)
    src = "synthetic replay of stream/demo/demo.wav"
    state = {"utterances": 0, "partials": 0}
    duration = script[-1].end + 1.0
    events: list[tuple[float, str, object]] = []

    def counters():
        return {"utterances": state["utterances"], "partials": state["partials"], "discarded": 0,
                "dropped_audio_frames": 0, "queue_depth": 0, "errors": 0, "messages_sent": 0, "send_failures": 0}

    def status(kind, t):
        return lambda: f.status(kind=kind, source=src, audio_time=t, uptime_s=t, counters=counters(), rtf=0.1,
                                rss_mb=600.0)

    events.append((0.0, "status", status("start", 0.0)))
    t = 1.0
    while t < duration:
        events.append((t, "status", status("heartbeat", t)))
        t += 1.0
    for uid, u in enumerate(script):
        words = u.text.split()
        rev, t = 0, u.start + partial_every
        while t < u.end:
            n = max(1, int(len(words) * (t - u.start) / (u.end - u.start)))
            text = " ".join(words[:n])

            def partial(uid=uid, u=u, t=t, text=text, rev=rev):
                state["partials"] += 1
                return [("transcript", f.transcript(utterance_id=uid, start=u.start, end=t, partial=True, revision=rev,
                                                    text=text, reliable=True, reason=None, no_speech_prob=0.01,
                                                    avg_logprob=-0.2, asr_ms=120.0)),
                        ("emotion", f.emotion(utterance_id=uid, start=u.start, end=t, partial=True, revision=rev,
                                              transcript=text, text_used=True, text_dropped=None, label=u.label,
                                              scores=_scores(u.label, labels, 0.6), confidence=0.6,
                                              modalities=("speech", "text"), asr_ms=120.0, emotion_ms=15.0,
                                              eos_to_publish_ms=None, model="synthetic"))]

            events.append((t, "batch", partial))
            rev += 1
            t += partial_every

        def final(uid=uid, u=u, rev=rev):
            state["utterances"] += 1
            return [("transcript", f.transcript(utterance_id=uid, start=u.start, end=u.end, partial=False,
                                                revision=rev, text=u.text, reliable=True, reason=None,
                                                no_speech_prob=0.01, avg_logprob=-0.2, asr_ms=300.0)),
                    ("emotion", f.emotion(utterance_id=uid, start=u.start, end=u.end, partial=False, revision=rev,
                                          transcript=u.text, text_used=True, text_dropped=None, label=u.label,
                                          scores=_scores(u.label, labels, 0.9), confidence=0.9,
                                          modalities=("speech", "text"), asr_ms=300.0, emotion_ms=15.0,
                                          eos_to_publish_ms=130.0, model="synthetic"))]

        events.append((u.end + 0.3, "batch", final))
    events.append((duration, "status", status("stop", duration)))
    events.sort(key=lambda e: e[0])
    return events


class SyntheticPublisher:
    """One synthetic stream on its own PUB socket, paced at `speed` x real time, in a thread."""

    def __init__(self, stream_id: str, endpoint: str | None = None, speed: float = 1.0, script=None, lead_s=1.0):
        import zmq

        self.endpoint = endpoint or free_endpoint()
        self.stream_id = stream_id
        self.speed = speed
        self.lead_s = lead_s  # subscribers connect before the first message
        self.events = synthetic_messages(stream_id, script or demo_script())
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind(self.endpoint)
        self.sent = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"synthetic-{stream_id}", daemon=True)

    def start(self) -> SyntheticPublisher:
        self.thread.start()
        return self

    def _run(self) -> None:
        from stream.messages import encode

        if self.stopping.wait(self.lead_s):
            return
        t0 = time.monotonic()
        for at, kind, build in self.events:
            delay = t0 + at / self.speed - time.monotonic()
            if delay > 0 and self.stopping.wait(delay) or self.stopping.is_set():
                return
            items = build() if kind == "batch" else [(kind, build())]
            for topic, msg in items:
                self.sock.send_multipart([topic.encode(), encode(msg)])
                self.sent += 1

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def close(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(5)
        self.sock.close()


class DashboardProcess:
    """`python -m stream.dashboard ENDPOINT... --port 0` in its own process; `url` once it serves."""

    def __init__(self, endpoints: list[str], extra: list[str] | None = None, timeout: float = 30):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.dashboard", *endpoints, "--port", "0",
                                      *(extra or [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env)
        self.url = None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("http"):
                self.url = line.strip()
                break
            if self.proc.poll() is not None:
                break
        if self.url is None:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.close()
            raise RuntimeError(f"stream.dashboard did not start: {err.strip() or line.strip() or 'timeout'}")

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


PAGE_PROBE = """() => {
  const probe = window.__probe = {renders: [], gaps: [], shown: [], waiting: [], last: performance.now()};
  const view = window.fdrl.view, store = window.fdrl.store, orig = view.render.bind(view);
  const ingest = store.ingest.bind(store);
  store.ingest = (topic, m, ep, rx, replayed) => { if (!replayed) probe.waiting.push(m.wall_time);
                                                 ingest(topic, m, ep, rx, replayed); };
  view.render = () => {
    const t = performance.now(); orig(); probe.renders.push(performance.now() - t);
    const now = Date.now();
    for (const w of probe.waiting) probe.shown.push(now - w * 1000);
    probe.waiting = [];
  };
  const tick = (now) => { probe.gaps.push(now - probe.last); probe.last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""

PAGE_RESULTS = """() => {
  const s = window.fdrl.store, out = {streams: 0, finals: 0, delivery: [], labels: {}};
  for (const st of s.streams.values()) {
    out.streams++;
    out.delivery.push(...st.delivery);
    out.labels[st.id] = s.utterances(st).filter(u => u.emo && !u.emo.partial).map(u => u.emo.label);
    out.finals += out.labels[st.id].length;
  }
  out.renders = window.__probe.renders; out.shown = window.__probe.shown; out.gaps = window.__probe.gaps.slice(5);
  out.bytes = performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))
    .filter(e => !e.name.endsWith('/events')).reduce((a, e) => a + (e.decodedBodySize || 0), 0);
  return out;
}"""


def measure(browser, n_streams: int, speed: float, timeout: float) -> dict:
    pubs = [SyntheticPublisher(f"bench-{n_streams}-{i}", speed=speed, lead_s=2.0) for i in range(n_streams)]
    dash = DashboardProcess([p.endpoint for p in pubs])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(dash.url)
        page.wait_for_function("() => window.fdrl !== undefined")
        page.evaluate(PAGE_PROBE)
        for p in pubs:
            p.start()
        expected = n_streams * len(demo_script())
        page.wait_for_function(f"""() => {{ let n = 0; for (const s of window.fdrl.store.streams.values())
            for (const u of s.utts.values()) if (u.emo && !u.emo.partial) n++; return n >= {expected}; }}""",
                               timeout=timeout * 1000)
        for p in pubs:
            p.join(timeout)
        time.sleep(0.5)
        r = page.evaluate(PAGE_RESULTS)
    finally:
        page.close()
        dash.close()
        for p in pubs:
            p.close()
    return {"streams": n_streams, "messages": sum(p.sent for p in pubs), "finals_on_page": r["finals"],
            "delivery_ms": summary(r["delivery"]), "delivery_max_ms": round(max(r["delivery"]), 1),
            "shown_ms": summary(r["shown"]), "shown_max_ms": round(max(r["shown"]), 1),
            "render_ms": summary(r["renders"]), "frame_gap_ms": summary(r["gaps"]),
            "frame_gap_max_ms": round(max(r["gaps"] or [0]), 1), "page_bytes": r["bytes"]}


def add_arguments(p) -> None:
    p.add_argument("--streams", type=int, default=8, help="streams at once in the loaded case (default: %(default)s)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed, 1 = real time (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default: {DEFAULT_OUT})")


def run(args) -> int:
    from bench.machine import describe, load_average, markdown_lines

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("no chromium found (Debian: apt-get install chromium; or set FDRL_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    started = time.time()
    machine = describe()
    duration = demo_script()[-1].end + 2
    results = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=launch_args())
        try:
            for n in (1, args.streams):
                print(f"bench dashboard: {n} stream(s), {duration / args.speed:.0f} s ...", file=sys.stderr)
                results.append(measure(browser, n, args.speed, timeout=duration / args.speed + 60))
        finally:
            browser.close()
    machine["load_average_end"] = load_average()
    one, many = results
    report = {"benchmark": "dashboard", "machine": machine, "speed": args.speed, "results": results,
              "ratio_delivery_median_many_vs_one": ratio(many["delivery_ms"]["median"], one["delivery_ms"]["median"]),
              "ratio_render_median_many_vs_one": ratio(many["render_ms"]["median"], one["render_ms"]["median"])}
    rows = ["| streams | messages | finals on page | publish -> page median / p95 / max "
            "| publish -> drawn median / p95 / max | render median / p95 | longest frame gap | page weight |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r['streams']} | {r['messages']} | {r['finals_on_page']} | {r['delivery_ms']['median']} / "
                    f"{r['delivery_ms']['p95']} / {r['delivery_max_ms']} ms | {r['shown_ms']['median']} / "
                    f"{r['shown_ms']['p95']} / {r['shown_max_ms']} ms | {r['render_ms']['median']} / "
                    f"{r['render_ms']['p95']} ms | {r['frame_gap_max_ms']} ms | {r['page_bytes'] / 1024:.0f} kB |")
    md = "\n".join(["# Dashboard under load (headless Chromium)", "", *markdown_lines(machine), "", *rows, "",
                    f"{args.streams} vs 1 stream: publish -> page median "
                    f"x{report['ratio_delivery_median_many_vs_one']}, render median "
                    f"x{report['ratio_render_median_many_vs_one']}", ""])
    js, mdp = write_results(args.out, "dashboard", started, report, md)
    print(md)
    print(f"results: {js}", file=sys.stderr)
    return 0
