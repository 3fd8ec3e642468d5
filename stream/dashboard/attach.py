"""What `stream.run --dashboard` and `--report` add to a run: taps on its publisher.

Every message the run publishes (emotion, transcript and status) is also handed to the in-process dashboard
(served from a thread) and to the report recorder. When the input ends by itself the dashboard keeps serving until
Ctrl-C, so a replayed file can still be looked at.
"""

from __future__ import annotations

import signal
import sys
import threading

DEFAULT_ADDRESS = "127.0.0.1:8765"


def parse_address(text: str) -> tuple[str, int]:
    """'PORT', 'HOST', 'HOST:PORT' or '[v6]:PORT' -> (host, port)."""
    from stream.dashboard import DashboardError
    from stream.dashboard.server import DEFAULT_HOST, DEFAULT_PORT

    text = text.strip()
    host, port = DEFAULT_HOST, str(DEFAULT_PORT)
    if text.isdigit():
        port = text
    elif text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    elif text:
        host = text
    if not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise DashboardError(f"--dashboard {text!r}: expected PORT, HOST or HOST:PORT")
    return host, int(port)


class RunViews:
    def __init__(self, dashboard: str | None = None, report: str | None = None, label: str | None = None):
        """Validates everything up front (bad address, unwritable report) so a long run never fails at the end."""
        self.report_path = None
        self.recorder = None
        self.dashboard = None
        self.url = None
        if report:
            from stream.report import Recorder, check_writable

            self.report_path = check_writable(report)
            self.recorder = Recorder()
        if dashboard is not None:
            from stream.dashboard import DashboardError

            try:
                from stream.dashboard.server import DashboardConfig, DashboardThread
            except ImportError as e:
                raise DashboardError(f"--dashboard needs the 'dashboard' extra ({e.name} missing): "
                                     "pip install 'fdrl-stream[dashboard]'") from None
            host, port = parse_address(dashboard)
            cfg = DashboardConfig(host=host, port=port)
            try:
                cfg.validate()
            except DashboardError:
                raise DashboardError("stream.run --dashboard serves loopback only; to expose the page use "
                                     "python -m stream.dashboard --host HOST --insecure-bind-any") from None
            self.dashboard = DashboardThread(cfg, label=label)

    @classmethod
    def from_args(cls, args, label: str | None = None) -> RunViews:
        return cls(getattr(args, "dashboard", None), getattr(args, "report", None), label)

    def start(self, publisher) -> None:
        """Serve the page now (while the models load), labelled with the address the publisher bound, and
        take every message the publisher sends from now on (status included)."""
        if self.dashboard is not None:
            self.dashboard.label = getattr(publisher, "endpoint", None) or self.dashboard.label
            self.url = self.dashboard.start()
            print(f"stream.run: dashboard at {self.url}", file=sys.stderr, flush=True)
            publisher.taps.append(self.dashboard.send)
        if self.recorder is not None:
            publisher.taps.append(self.recorder.send)

    def finish(self, *, stopped: bool, meta: dict | None = None) -> None:
        """After the pipeline: write the report; keep the page up until Ctrl-C if the input simply ended."""
        if self.recorder is not None:
            from stream.report import write_report

            p = write_report(self.report_path, self.recorder.messages(), meta=meta)
            print(f"stream.run: report written to {p} ({p.stat().st_size / 1024:.0f} kB)", file=sys.stderr,
                  flush=True)
        if self.dashboard is not None and not stopped:
            done = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: done.set())
            print(f"stream.run: input finished; the dashboard stays at {self.url} until Ctrl-C", file=sys.stderr,
                  flush=True)
            while not done.wait(0.5):
                pass

    def close(self) -> None:
        if self.dashboard is not None:
            self.dashboard.close()
