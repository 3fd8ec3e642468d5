"""The dashboard and the report in a real browser (headless Chromium from the system, driven by Playwright).

One real-time run of the bundled demo feeds everything a user would look at: the standalone dashboard
(`python -m stream.dashboard`, opened before the run starts, so every message arrives live), the page the
run serves itself (`--dashboard`) and the report it writes (`--report`). The page may load nothing from
the network: every request that is not to the dashboard is blocked and fails the test. Screenshots go to
build/test-artifacts/ (or $FDRL_TEST_ARTIFACTS) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.common import free_endpoint
from bench.dashboard import DashboardProcess, SyntheticPublisher, demo_script, find_chromium, launch_args

REPO = Path(__file__).resolve().parent.parent
DEMO_LABELS = [u["emotion"] for u in json.loads((REPO / "stream/demo/demo.json").read_text())["utterances"]]
ARTIFACTS = Path(os.environ.get("FDRL_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
RUN_TIMEOUT = 300  # the demo on a busy 2-core machine; a healthy run takes well under a minute

FINAL_LABELS_JS = """(sid) => Array.from(document.querySelectorAll(
  (sid ? `section.stream[data-stream="${sid}"] ` : '') + 'svg .span.final')).map(g => g.dataset.label)"""


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium chromium-driver; "
                    "scripts/setup.sh installs it)")
    from playwright.sync_api import sync_playwright  # the dev extra; a missing one is a setup error

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, args=launch_args())
        yield b
        b.close()


class Offline:
    """Blocks (and records) every request that does not go to `allowed` prefixes."""

    def __init__(self, page, *allowed: str):
        self.allowed = allowed
        self.blocked: list[str] = []
        self.errors: list[str] = []
        page.route("**/*", self._route)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.allowed) or url.startswith(("data:", "file:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def check(self):
        assert not self.blocked, f"the page tried the network: {self.blocked}"
        assert not self.errors, f"errors in the page: {self.errors}"


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p = ARTIFACTS / name
    page.screenshot(path=str(p), full_page=True)
    assert p.stat().st_size > 10_000
    return p


def _pump(stream, sink: list[str]) -> None:
    for line in stream:
        sink.append(line)


@pytest.fixture(scope="module")
def demo_run(browser, tmp_path_factory):
    """The demo published into a dashboard that a browser has open; the run also serves its own page and
    writes a report. Yields what the page showed while the run went on."""
    tmp = tmp_path_factory.mktemp("dashboard")
    endpoint = free_endpoint()
    report = tmp / "demo-report.html"
    dash = DashboardProcess([endpoint])
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    offline = Offline(page, dash.url)
    page.goto(dash.url)
    page.wait_for_function("() => window.fdrl !== undefined")
    waiting_text = page.inner_text("#app")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # --realtime: paced like a microphone, as someone watching would run it (a file replayed as fast as
    # possible skips the partial passes, so there would be no provisional results to see)
    run = subprocess.Popen([sys.executable, "-m", "stream.run", "--demo", "--realtime", "--endpoint", endpoint,
                            "--dashboard", "127.0.0.1:0", "--report", str(report)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = [], []
    pumps = [threading.Thread(target=_pump, args=(run.stdout, out), daemon=True),
             threading.Thread(target=_pump, args=(run.stderr, err), daemon=True)]
    for t in pumps:
        t.start()
    seen_counts, seen_provisional = [], False
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline and run.poll() is None:
            n = len(page.evaluate(FINAL_LABELS_JS, None))
            seen_provisional |= page.locator("svg .span.provisional").count() > 0
            if not seen_counts or seen_counts[-1] != n:
                seen_counts.append(n)
            if n >= len(DEMO_LABELS) and any("stays at" in line for line in err):
                break
            time.sleep(0.25)
        # the run's own page (--dashboard): served from inside stream.run, still up after the input ended
        own_url = next((line.split("dashboard at ", 1)[1].strip() for line in err if "dashboard at " in line), None)
        result = {"page": page, "offline": offline, "waiting_text": waiting_text, "seen_counts": seen_counts,
                  "seen_provisional": seen_provisional, "report": report, "stdout": out, "stderr": err,
                  "own_url": own_url, "labels": page.evaluate(FINAL_LABELS_JS, None),
                  "live_received": page.evaluate("window.fdrl.store.liveReceived")}
        if own_url:
            own = browser.new_page(viewport={"width": 1280, "height": 860})
            own_offline = Offline(own, own_url)
            own.goto(own_url)
            own.wait_for_function(f"() => document.querySelectorAll('svg .span.final').length >= {len(DEMO_LABELS)}",
                                  timeout=30_000)
            result.update(own_labels=own.evaluate(FINAL_LABELS_JS, None), own_offline=own_offline,
                          own_state=own.inner_text(".state"), own_counters=own.inner_text(".counters"),
                          own_endpoints=own.inner_text("#endpoints"))
            own.close()
        if run.poll() is None:
            run.send_signal(signal.SIGINT)  # the page lingers until Ctrl-C
        result["returncode"] = run.wait(30)
        yield result
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        page.close()
        dash.close()


def test_live_page_shows_the_demo_utterances_in_order(demo_run):
    r = demo_run
    assert r["returncode"] == 0, "".join(r["stderr"][-20:])
    printed = [m.group(1).lower() for m in map(re.compile(r"^\[[^\]]*\]\s+(\w+)").match, r["stdout"]) if m]
    assert "Waiting for a stream on tcp://" in r["waiting_text"]  # the page was open before the run started
    assert r["labels"] == DEMO_LABELS, f"stream.run printed {printed}"
    # live: the page was never reloaded, messages arrived one by one and provisional results were drawn
    assert r["live_received"] > 2 * len(DEMO_LABELS)
    # (not monotonic: speech resuming after an early final reopens that utterance until its revised final)
    assert len(set(r["seen_counts"])) > 2 and r["seen_counts"][-1] == len(DEMO_LABELS), r["seen_counts"]
    assert r["seen_provisional"]
    page = r["page"]
    assert page.locator(".transcript li.utt.final").count() == len(DEMO_LABELS)
    assert "unacceptable" in page.inner_text(".transcript")
    chips = page.inner_text(".counters")
    assert "dropped audio" in chips and "RTF" in chips and "memory" in chips and "errors" in chips
    assert page.locator(".state").first.inner_text().lower() == "ended"
    # the current utterance's scores; clicking another utterance shows its scores instead
    assert page.locator(".current .score").count() == 4
    page.click('svg .span.final[data-utt="2"]')
    assert "selected utterance" in page.inner_text(".current").lower()
    assert page.inner_text(".current .current-head .label-tag").lower() == DEMO_LABELS[2]
    shot(page, "dashboard-live-demo.png")
    # a phone-sized window: nothing sticks out sideways and the words keep a readable width
    page.set_viewport_size({"width": 375, "height": 800})
    page.wait_for_timeout(300)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.locator(".transcript li.utt .text").first.bounding_box()["width"] > 250
    shot(page, "dashboard-live-demo-narrow.png")
    r["offline"].check()


def test_run_serves_its_own_page(demo_run):
    assert demo_run["own_url"], "stream.run --dashboard printed no address"
    assert demo_run["own_labels"] == DEMO_LABELS
    # the run's status messages reach its own page too: health counters and the end of the input
    assert demo_run["own_state"].lower() == "ended"
    assert re.search(r"\d+ MB memory", demo_run["own_counters"]) and "0 dropped audio" in demo_run["own_counters"]
    assert "this run" in demo_run["own_endpoints"]
    demo_run["own_offline"].check()


def test_report_opens_offline_and_shows_the_same(demo_run, browser):
    report = demo_run["report"]
    assert report.is_file()
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    offline = Offline(page)  # nothing but the file itself
    page.goto(report.as_uri())
    assert page.evaluate(FINAL_LABELS_JS, None) == DEMO_LABELS
    rows = page.locator("table.utt-table tbody tr")
    assert rows.count() == len(DEMO_LABELS)
    assert [rows.nth(i).locator("td").nth(2).inner_text().lower() for i in range(rows.count())] == DEMO_LABELS
    assert page.locator(".latency-chart .lat-bar").count() == len(DEMO_LABELS)
    summary = page.inner_text("table.summary-table")
    assert "8" in summary and "→ emotion per utterance" in summary
    assert page.inner_text(".state").lower() == "complete" and "RTF" in page.inner_text(".counters")
    shot(page, "report-demo.png")
    offline.check()
    page.close()


def test_eight_streams_at_once(browser):
    n = 8
    pubs = [SyntheticPublisher(f"stream-{i}", speed=8.0, lead_s=1.5) for i in range(n)]
    dash = DashboardProcess([p.endpoint for p in pubs])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    offline = Offline(page, dash.url)
    try:
        page.goto(dash.url)
        page.wait_for_function("() => window.fdrl !== undefined")
        for p in pubs:
            p.start()
        want = len(demo_script())
        page.wait_for_function(f"() => document.querySelectorAll('svg .span.final').length >= {n * want}",
                               timeout=120_000)
        for p in pubs:
            assert page.evaluate(FINAL_LABELS_JS, p.stream_id) == DEMO_LABELS
        assert page.locator("section.stream").count() == n
        assert page.locator("span.ep.ok").count() == n  # every endpoint shows as connected
        assert page.locator("table.summary-table tbody tr").count() == n
        # still interactive with eight streams on the page
        page.click('section.stream[data-stream="stream-5"] svg .span.final[data-utt="3"]')
        assert "selected utterance" in page.inner_text('section.stream[data-stream="stream-5"] .current').lower()
        shot(page, "dashboard-eight-streams.png")
        offline.check()
    finally:
        page.close()
        dash.close()
        for p in pubs:
            p.close()


def test_uncertain_provisional_and_tentative_are_drawn_differently(browser, tmp_path):
    """Fields newer than fdrl.*/1 (uncertain, stability, committed/tentative words) are shown when present."""
    from stream.messages import MessageFactory
    from stream.report import write_report

    f = MessageFactory("fields")
    scores = {"neutral": 0.3, "happy": 0.25, "angry": 0.25, "sad": 0.2}
    common = dict(transcript="so I was thinking", text_used=True, text_dropped=None, scores=scores,
                  confidence=0.3, modalities=("speech", "text"), asr_ms=100.0, emotion_ms=10.0, model="t")
    unsure = {**f.emotion(utterance_id=0, start=0.5, end=2.0, partial=False, revision=1, label="neutral",
                          eos_to_publish_ms=100.0, **common), "uncertain": True, "uncertain_reason": "low margin"}
    growing = {**f.emotion(utterance_id=1, start=3.0, end=4.0, partial=True, revision=0, label="happy",
                           eos_to_publish_ms=None, **common), "stable": False}
    words = {**f.transcript(utterance_id=1, start=3.0, end=4.0, partial=True, revision=0, text="so I was thinking",
                            reliable=True, reason=None, no_speech_prob=0.0, avg_logprob=-0.1, asr_ms=90.0),
             "committed": "so I was", "tentative": "thinking"}
    old = f.emotion(utterance_id=2, start=5.0, end=6.0, partial=False, revision=0, label="sad",
                    eos_to_publish_ms=90.0, **common)  # a message without any of the new fields
    out = write_report(tmp_path / "fields.html", [("emotion", unsure), ("transcript", words), ("emotion", growing),
                                                  ("emotion", old)])
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    offline = Offline(page)
    page.goto(out.as_uri())
    assert page.get_attribute('svg .span[data-utt="0"]', "class").split() == ["span", "final", "uncertain"]
    assert page.locator('svg .span[data-utt="0"] .hatch').count() == 1
    assert set(page.get_attribute('svg .span[data-utt="1"]', "class").split()) == {"span", "provisional", "unstable"}
    assert page.get_attribute('svg .span[data-utt="2"]', "class").split() == ["span", "final"]
    row0 = page.inner_text('.transcript li[data-utt="0"]')
    assert "uncertain: low margin" in row0
    assert page.inner_text('.transcript li[data-utt="1"] .committed') == "so I was"
    assert page.inner_text('.transcript li[data-utt="1"] .tentative').strip() == "thinking"
    page.click('svg .span[data-utt="0"]')
    assert "uncertain: low margin" in page.inner_text(".current")
    shot(page, "report-new-fields.png")
    offline.check()
    page.close()


def test_a_run_without_speech_gives_a_report_that_says_so(browser, tmp_path):
    """Silence in, a valid report out: the stream, its counters and "no speech found", not an empty page."""
    from stream.messages import MessageFactory
    from stream.report import write_report

    f = MessageFactory("quiet")
    counters = {"utterances": 0, "dropped_audio_frames": 0, "errors": 0, "messages_sent": 1}
    status = [f.status(kind=kind, source="file silence.wav", audio_time=t, uptime_s=t, counters=counters, rtf=0.01,
                       rss_mb=240.0) for kind, t in (("start", 0.0), ("stop", 6.0))]
    out = write_report(tmp_path / "quiet.html", [("status", m) for m in status])
    page = browser.new_page(viewport={"width": 1280, "height": 700})
    offline = Offline(page)
    page.goto(out.as_uri())
    assert page.inner_text(".state").lower() == "complete"
    assert "no speech found in 6.0 s of audio" in page.inner_text(".transcript-box")
    assert "no utterances" in page.inner_text("table.utt-table")
    shot(page, "report-no-speech.png")
    offline.check()
    page.close()
