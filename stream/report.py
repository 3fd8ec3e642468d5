"""A self-contained HTML report of a run: timeline, transcript, per-class scores, latency and a summary table.

One file with its styles, script and data inline (no network, nothing beside it), drawn by the same code
as the live dashboard (stream/dashboard/static/render.js). `stream.run --report out.html` writes it from the
messages the run published; `python -m stream.report capture.jsonl -o out.html` from messages recorded
with `python -m stream.subscribe --topics emotion,transcript,status --json`.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from fdrl_core.cli import ArgumentParser, add_debug_flag, debug_requested, run_main
from stream.dashboard import STATIC_DIR, ReportError, ReportWriteError
from stream.dashboard.state import StreamState
from stream.messages import SCHEMAS

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
TOPIC_OF_SCHEMA = {v.split("/")[0]: k for k, v in SCHEMAS.items()}  # "fdrl.emotion" -> "emotion"


def _script_json(data) -> str:
    """JSON safe inside <script>: no '</script>', '<!--' or line separators can end or confuse it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def build_report(messages: Iterable[tuple[str, dict]], *, title: str = "fdrl-stream run report",
                 meta: dict | None = None) -> str:
    """The HTML text. `messages` are (topic, message) pairs; partials superseded by finals are left out."""
    state = StreamState(max_utterances=None, max_streams=10_000)
    for topic, msg in messages:
        state.add(topic, msg)
    data = state.messages()
    meta = {"created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **(meta or {})}
    css = (STATIC_DIR / "style.css").read_text(encoding="utf-8")
    js = (STATIC_DIR / "render.js").read_text(encoding="utf-8")
    payload = _script_json({"meta": meta, "messages": [list(m) for m in data]})
    meta_line = " · ".join(f"{k}: {v}" for k, v in meta.items() if v)
    boot = ("(function(){var d=JSON.parse(document.getElementById('fdrl-data').textContent);"
            "var store=new FdrlView.Store();"
            "for(var i=0;i<d.messages.length;i++){store.ingest(d.messages[i][0],d.messages[i][1],null,null,true);}"
            "var view=new FdrlView.View(document.getElementById('app'),store,{mode:'report'});"
            "view.render();window.fdrl={store:store,view:view};"
            "window.addEventListener('resize',function(){store.streams.forEach(function(s){s.dirty=true;});"
            "store.version++;view.render();});})();")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="generator" content="fdrl-stream stream.report">
<title>{html.escape(title)}</title>
<style>
{css}
</style>
</head>
<body>
<header class="top">
  <h1>fdrl-stream <span class="sub">run report</span></h1>
  <span class="report-meta">{html.escape(meta_line)}</span>
</header>
<main id="app"></main>
<footer class="foot">Self-contained report: styles, script and data are inside this file.</footer>
<script id="fdrl-data" type="application/json">{payload}</script>
<script>
{js}
</script>
<script>{boot}</script>
</body>
</html>
"""


def check_writable(path: str | os.PathLike) -> Path:
    """Fail before a long run, not after it."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ReportError(f"cannot write the report to {p}: it is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ReportError(f"cannot write the report to {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ReportError(f"cannot write the report to {p}: permission denied")
    try:  # as root os.access says yes to everything, and some folders (/proc, read-only mounts) take no file
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ReportError(f"cannot write the report to {p}: {e.strerror or e}") from None
    return p


def write_report(path: str | os.PathLike, messages: Iterable[tuple[str, dict]], **kw) -> Path:
    """Write atomically (a crash never leaves half a report)."""
    p = check_writable(path)
    text = build_report(messages, **kw)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent or ".")
    except OSError as e:
        raise ReportWriteError(f"cannot write the report to {p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise ReportWriteError(f"cannot write the report to {p}: {e.strerror or e}") from None
    return p


class Recorder:
    """Collects published messages (thread-safe, `send(topic, msg)` is a publisher tap), compacted as they come
    so a long run stays small."""

    def __init__(self):
        self.state = StreamState(max_utterances=None, max_streams=10_000)
        self.lock = threading.Lock()

    def send(self, topic: str, msg: dict) -> None:
        with self.lock:
            self.state.add(topic, msg)

    def messages(self) -> list[tuple[str, dict]]:
        with self.lock:
            return self.state.messages()


def read_capture(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """Messages recorded with `stream.subscribe --json` (one JSON message per line; `schema` names the topic)."""
    from fdrl_core.manifest import read_utf8

    p = Path(path)
    try:
        lines = read_utf8(p).splitlines()
    except FileNotFoundError:
        raise ReportError(f"{p}: no such file") from None
    except OSError as e:
        raise ReportError(f"{p}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:  # a byte that is not UTF-8, with its line and column
        raise ReportError(str(e)) from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            msg = json.loads(line)
        except ValueError as e:
            raise ReportError(f"{p}:{n}: not a JSON message ({e.msg})") from None
        topic = TOPIC_OF_SCHEMA.get(str(msg.get("schema", "")).split("/")[0]) if isinstance(msg, dict) else None
        if topic is None:
            raise ReportError(f"{p}:{n}: not an fdrl-stream message (no known 'schema' field)")
        out.append((topic, msg))
    if not out:
        raise ReportError(f"{p}: no messages in it")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = ArgumentParser(prog="python -m stream.report", description=__doc__.split("\n\n")[0],
                        epilog="example:\n  python -m stream.subscribe --topics emotion,transcript,status "
                               "--json > run.jsonl\n  python -m stream.report run.jsonl -o run.html",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("capture", help="JSON lines from stream.subscribe --json")
    ap.add_argument("-o", "--out", required=True, metavar="OUT.html", help="report file to write")
    ap.add_argument("--title", default="fdrl-stream run report")
    add_debug_flag(ap)
    args = ap.parse_args(argv)

    def body() -> int:
        check_writable(args.out)
        msgs = read_capture(args.capture)
        p = write_report(args.out, msgs, title=args.title, meta={"from": Path(args.capture).name})
        print(f"stream.report: wrote {p} ({p.stat().st_size / 1024:.0f} kB)", file=sys.stderr)
        return 0

    # ReportError is an input error (exit 2), ReportWriteError a run-time failure (exit 1)
    return run_main("stream.report", body, debug=debug_requested(args))

if __name__ == "__main__":
    sys.exit(main())
