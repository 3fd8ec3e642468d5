"""The live dashboard and the HTML report, without a browser: history kept for late pages, the page's
assets (offline, small), the report (self-contained, safe with hostile text), the CLI rules (loopback
unless asked, one-line errors) and the event stream a page reads."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from stream.dashboard import STATIC_DIR
from stream.dashboard.state import StreamState
from stream.messages import MessageFactory, validate
from stream.report import read_capture, write_report

REPO = Path(__file__).resolve().parent.parent
LABELS = ("neutral", "happy", "angry", "sad")


def emotion(f: MessageFactory, uid: int, label: str, *, partial: bool, revision: int, text: str = "hello",
            start: float = 0.0, end: float = 1.0) -> dict:
    scores = {k: (0.7 if k == label else 0.1) for k in LABELS}
    m = f.emotion(utterance_id=uid, start=start, end=end, partial=partial, revision=revision, transcript=text,
                  text_used=True, text_dropped=None, label=label, scores=scores, confidence=0.7,
                  modalities=("speech", "text"), asr_ms=100.0, emotion_ms=10.0,
                  eos_to_publish_ms=None if partial else 120.0, model="test")
    validate("emotion", m)
    return m


def transcript(f: MessageFactory, uid: int, text: str, *, partial: bool, revision: int) -> dict:
    m = f.transcript(utterance_id=uid, start=0.0, end=1.0, partial=partial, revision=revision, text=text,
                     reliable=True, reason=None, no_speech_prob=0.01, avg_logprob=-0.2, asr_ms=100.0)
    validate("transcript", m)
    return m


def status(f: MessageFactory, kind: str = "heartbeat") -> dict:
    m = f.status(kind=kind, source="test", audio_time=1.0, uptime_s=1.0, rtf=0.2, rss_mb=500.0,
                 counters={"utterances": 1, "partials": 0, "discarded": 0, "dropped_audio_frames": 3,
                           "queue_depth": 0, "errors": 0, "messages_sent": 5, "send_failures": 0})
    validate("status", m)
    return m


def kept(state: StreamState) -> list[tuple[str, dict]]:
    return state.messages()


def test_history_keeps_each_utterances_final_and_newest_message_in_arrival_order():
    f = MessageFactory("s1")
    st = StreamState()
    sent = [("status", status(f, "start")), ("emotion", emotion(f, 0, "sad", partial=True, revision=0)),
            ("emotion", emotion(f, 0, "sad", partial=True, revision=1)),
            ("emotion", emotion(f, 0, "angry", partial=False, revision=2)),
            ("emotion", emotion(f, 1, "happy", partial=True, revision=0)), ("status", status(f))]
    for topic, m in sent:
        assert st.add(topic, m, "tcp://x") is not None
    got = [(t, m.get("utterance_id"), m.get("revision"), m.get("kind")) for t, m in kept(st)]
    assert got == [("status", None, None, "start"), ("emotion", 0, 2, None), ("emotion", 1, 0, None),
                   ("status", None, None, "heartbeat")]  # superseded partials of utterance 0 are gone


def test_history_is_bounded_and_ignores_what_is_not_a_stream_message():
    f = MessageFactory("s1")
    st = StreamState(max_utterances=3, max_streams=2)
    for uid in range(10):
        st.add("emotion", emotion(f, uid, "sad", partial=False, revision=0))
    assert [m["utterance_id"] for _, m in kept(st)] == [7, 8, 9]
    for sid in ("s2", "s3"):
        st.add("status", status(MessageFactory(sid)))
    assert list(st.streams) == ["s2", "s3"]  # the least recently active stream was forgotten
    assert st.add("emotion", {"no": "stream id"}) is None
    assert st.add("bogus", {"stream_id": "s2"}) is None
    assert st.ignored == 2


def test_page_assets_are_local_and_small():
    files = sorted(p for p in STATIC_DIR.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"index.html", "render.js", "live.js", "style.css"}
    assert sum(p.stat().st_size for p in files) < 1_000_000  # page weight target: < 1 MB
    for p in files:
        text = p.read_text()
        urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"')]*", text))
        urls.discard("http://www.w3.org/2000/svg")  # the SVG namespace name, never fetched
        assert not urls, f"{p.name} refers to the network: {urls}"
        assert "@import" not in text and "url(http" not in text
    html = (STATIC_DIR / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert not urlparse(ref).scheme or ref.startswith("data:"), ref


def test_report_is_one_self_contained_file_and_hostile_text_stays_text(tmp_path):
    f = MessageFactory("run-1")
    evil = "</script><script>window.pwned=1</script><!-- & \u2028"
    msgs = [("status", status(f, "start")), ("transcript", transcript(f, 0, evil, partial=False, revision=1)),
            ("emotion", emotion(f, 0, "angry", partial=False, revision=1, text=evil)), ("status", status(f, "stop"))]
    out = write_report(tmp_path / "r.html", msgs)
    html = out.read_text()
    assert "window.pwned=1</script>" not in html and "<script>window.pwned" not in html
    assert not re.search(r'<(?:script|link|img)[^>]+(?:src|href)=', html)  # nothing loaded from beside it
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    data = re.search(r'<script id="fdrl-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    payload = json.loads(data)
    assert [t for t, _ in payload["messages"]] == ["status", "transcript", "emotion", "status"]
    assert payload["messages"][2][1]["transcript"] == evil
    assert (STATIC_DIR / "render.js").read_text() in html  # the live page's renderer, not a copy of it


def test_report_from_a_subscriber_capture(tmp_path):
    f = MessageFactory("run-2")
    lines = [json.dumps(m) for m in (status(f, "start"), emotion(f, 0, "sad", partial=False, revision=0))]
    cap = tmp_path / "cap.jsonl"
    cap.write_text("\n".join(lines) + "\n")
    assert [t for t, _ in read_capture(cap)] == ["status", "emotion"]
    r = subprocess.run([sys.executable, "-m", "stream.report", str(cap), "-o", str(tmp_path / "o.html")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.html").stat().st_size > 1000
    cap.write_text(lines[0] + "\nnot json\n")
    r = subprocess.run([sys.executable, "-m", "stream.report", str(cap), "-o", str(tmp_path / "o.html")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cap.jsonl:2" in r.stderr and "Traceback" not in r.stderr


def _one_line_error(cmd: list[str]) -> str:
    r = subprocess.run([sys.executable, "-m", *cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_dashboard_serves_beyond_loopback_only_when_asked():
    line = _one_line_error(["stream.dashboard", "--host", "0.0.0.0", "--port", "0"])
    assert "--insecure-bind-any" in line


def test_dashboard_bad_endpoint_and_port_in_use():
    assert "not-an-endpoint" in _one_line_error(["stream.dashboard", "not-an-endpoint", "--port", "0"])
    # the same rules as stream.subscribe: a port that cannot exist, or a wildcard nobody can connect to
    assert "port must be 1-65535" in _one_line_error(["stream.dashboard", "tcp://127.0.0.1:99999", "--port", "0"])
    assert "one host and port" in _one_line_error(["stream.dashboard", "tcp://127.0.0.1:*", "--port", "0"])
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert "already in use" in _one_line_error(["stream.dashboard", "--port", str(port)])


def test_run_refuses_an_unwritable_report_before_loading_models(tmp_path):
    line = _one_line_error(["stream.run", "--demo", "--report", str(tmp_path / "missing" / "r.html")])
    assert "does not exist" in line  # one line and nothing else: the models were never loaded
    assert "--insecure-bind-any" in _one_line_error(["stream.run", "--demo", "--dashboard", "0.0.0.0:0"])



@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_a_report_folder_that_accepts_no_files_is_refused_up_front():
    """/proc passes a permission check (as root: everything does) but takes no new file: refused before
    the run, naming the report, not after it naming a temporary file."""
    line = _one_line_error(["stream.run", "--demo", "--report", "/proc/r.html"])
    assert "cannot write the report to /proc/r.html" in line and ".r.html." not in line
    line = _one_line_error(["stream.report", "capture.jsonl", "-o", "/proc/r.html"])
    assert "cannot write the report to /proc/r.html" in line



def test_report_names_the_line_of_a_non_utf8_byte(tmp_path):
    capture = tmp_path / "run.jsonl"
    capture.write_bytes(b'{"schema": "fdrl.status/1"}\n\xff\xfe\n')
    line = _one_line_error(["stream.report", str(capture), "-o", str(tmp_path / "r.html")])
    assert "run.jsonl line 2 column 1: byte 0xff is not UTF-8" in line


def _read_events(url: str, n: int, timeout: float = 10, until=None) -> list[list[dict]]:
    """The first `n` batches a page would get (or fewer: up to the first batch for which `until` holds)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", "/events")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    batches = []
    while len(batches) < n:
        line = resp.readline().decode()
        if line.startswith("data: "):
            batches.append(json.loads(line[6:]))
            if until is not None and until(batches[-1]):
                break
    conn.close()
    return batches


def test_a_late_page_gets_the_history_then_live_messages():
    from stream.dashboard.server import DashboardConfig, DashboardThread

    dash = DashboardThread(DashboardConfig(port=0), label="in-process")
    url = dash.start()
    try:
        f = MessageFactory("s-late")
        dash.send("emotion", emotion(f, 0, "sad", partial=True, revision=0))
        dash.send("emotion", emotion(f, 0, "happy", partial=False, revision=1))
        time.sleep(0.3)
        conn = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port, timeout=10)
        conn.request("GET", "/")
        page = conn.getresponse()
        assert page.status == 200 and "default-src 'none'" in page.getheader("Content-Security-Policy")
        conn.close()
        import threading

        later = threading.Timer(0.5, dash.send, ("emotion", emotion(f, 1, "angry", partial=False, revision=0)))
        later.start()
        first, second = _read_events(url, 2)
        later.join()
        assert [x["t"] for x in first] == ["reset", "endpoint", "msg", "replayed"]
        assert first[1]["ep"] == "in-process" and first[1]["detail"] == "this run"  # where the run publishes
        assert first[2]["m"]["label"] == "happy" and first[2]["ep"] == "in-process"
        assert [(x["m"]["utterance_id"], x["m"]["label"]) for x in second] == [(1, "angry")]
        conn = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port, timeout=10)
        conn.request("GET", "/report.html")
        rep = conn.getresponse()
        assert rep.status == 200 and b"fdrl-data" in rep.read()
    finally:
        dash.close()


def test_curve_publisher_is_read_with_the_subscriber_key_files(tmp_path):
    import threading

    import zmq
    import zmq.auth

    import stream.publisher

    if not hasattr(stream.publisher, "load_public_key"):
        pytest.skip("CURVE key files arrive with the publisher's CURVE support (issue 13 branch)")
    from bench.common import free_endpoint
    from bench.dashboard import DashboardProcess
    from stream.messages import encode

    server_pub, server_secret = zmq.auth.create_certificates(str(tmp_path), "server")
    _, client_secret = zmq.auth.create_certificates(str(tmp_path), "client")
    endpoint = free_endpoint()
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.curve_publickey, sock.curve_secretkey = zmq.auth.load_certificate(server_secret)
    sock.bind(endpoint)
    stop = threading.Event()
    f = MessageFactory("curve-stream")

    def publish():
        while not stop.wait(0.2):
            sock.send_multipart([b"status", encode(status(f))])

    dash = DashboardProcess([endpoint], ["--curve-server-key", server_pub, "--curve-secret", client_secret])
    t = threading.Thread(target=publish, daemon=True)
    t.start()
    try:
        batches = _read_events(dash.url, 50, timeout=30, until=lambda b: any(x["t"] == "msg" for x in b))
        got = [x for b in batches for x in b if x["t"] == "msg"]
        assert got and got[0]["m"]["stream_id"] == "curve-stream"
    finally:
        stop.set()
        t.join()
        dash.close()
        sock.close()


def test_run_views_get_every_published_message_status_included(tmp_path):
    """stream.run --dashboard/--report tap the publisher: the report (and the run's own page) see the status
    messages too, so RTF, memory, dropped audio and errors are not blank and an ended run reads as complete."""
    from stream.dashboard.attach import RunViews
    from stream.publisher import Publisher

    views = RunViews(report=str(tmp_path / "run.html"))
    pub = Publisher("tcp://127.0.0.1:*")
    try:
        views.start(pub)
        f = MessageFactory("tapped")
        for topic, m in (("status", status(f, "start")), ("emotion", emotion(f, 0, "sad", partial=False, revision=0)),
                         ("status", status(f, "stop"))):
            pub.send(topic, m)
        views.finish(stopped=True)
    finally:
        pub.close()
        views.close()
    assert [(t, m.get("kind")) for t, m in views.recorder.messages()] == [
        ("status", "start"), ("emotion", None), ("status", "stop")]


def test_dashboard_answers_only_to_loopback_host_names():
    from stream.dashboard.server import DashboardConfig, DashboardThread

    dash = DashboardThread(DashboardConfig(port=0))
    url = urlparse(dash.start())
    try:
        for host, want in (("localhost", 200), (f"127.0.0.1:{url.port}", 200), ("evil.example:80", 403)):
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            conn.request("GET", "/", headers={"Host": host})
            assert conn.getresponse().status == want, host
            conn.close()
    finally:
        dash.close()


def test_a_page_that_falls_behind_is_resynchronised_not_buffered_without_bound():
    from stream.dashboard.server import DashboardConfig, DashboardThread

    dash = DashboardThread(DashboardConfig(port=0, client_queue=3))
    url = dash.start()
    f = MessageFactory("burst")
    burst = [emotion(f, uid, "sad", partial=False, revision=0) for uid in range(50)]

    def flood():  # one loop callback: the page's writer cannot run in between
        for m in burst:
            dash.hub.feed("emotion", m, None)

    try:
        import threading

        later = threading.Timer(0.5, dash.loop.call_soon_threadsafe, (flood,))
        later.start()
        first, second = _read_events(url, 2)
        later.join()
        assert [x["t"] for x in first] == ["reset", "replayed"]
        assert second[0]["t"] == "reset" and second[-1]["t"] == "replayed"  # a fresh snapshot, not 50 queued
        assert [x["m"]["utterance_id"] for x in second if x["t"] == "msg"] == list(range(50))
        assert all(c.queue.qsize() <= 3 for c in dash.hub.clients)
    finally:
        dash.close()
