"""python -m stream.dashboard: watch running streams in a web browser (served locally, works offline).

Subscribes to one or more stream.run publishers (ZeroMQ endpoints) and serves a page that shows, live, an
emotion timeline per stream, the transcript, the current utterance's scores, latency and the stream's
health counters. A page opened late first gets what happened so far.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from fdrl_core.cli import ArgumentParser, InputError, add_debug_flag, debug_requested, run_main

EPILOG = """examples:
  python -m stream.run --demo --realtime &                     # a stream on tcp://127.0.0.1:5556
  python -m stream.dashboard                                   # then open http://127.0.0.1:8765/
  python -m stream.dashboard tcp://127.0.0.1:5556 tcp://127.0.0.1:5557   # several streams on one page
  python -m stream.dashboard --port 0                          # any free port (printed)
  python -m stream.run --demo --realtime --dashboard           # or: the page served by the run itself

The page is served on loopback only unless --host names another interface AND --insecure-bind-any is
given: the page has no authentication, so anyone who can reach the port sees the emotions and transcripts.
Publishers that use CURVE (stream.run --curve-secret) are read with the same key files as stream.subscribe:
--curve-server-key (the publisher's public key) and --curve-secret (this subscriber's key pair).
Exit status: 0 stopped with Ctrl-C or SIGTERM, 1 an unexpected failure, 2 bad arguments or setup (port in
use, bad endpoint or key file, aiohttp missing)."""


def build_parser() -> argparse.ArgumentParser:
    from stream.publisher import DEFAULT_ENDPOINT, add_subscriber_curve_args

    ap = ArgumentParser(prog="python -m stream.dashboard", description=__doc__.split("\n\n")[1],
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("endpoints", nargs="*", metavar="ENDPOINT",
                    help=f"ZeroMQ endpoints of running streams (default: {DEFAULT_ENDPOINT})")
    ap.add_argument("--host", default="127.0.0.1", help="interface to serve the page on (default: %(default)s)")
    ap.add_argument("--port", type=int, default=8765, help="HTTP port; 0 = any free port (default: %(default)s)")
    ap.add_argument("--insecure-bind-any", action="store_true",
                    help="allow --host beyond loopback (the page has no authentication: trusted networks only)")
    add_subscriber_curve_args(ap, publisher="the publishers")
    ap.add_argument("--keep", type=int, default=2000, metavar="N",
                    help="utterances per stream kept for pages opened later (default: %(default)s)")
    add_debug_flag(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main("stream.dashboard", lambda: _serve(args), debug=debug_requested(args))


def _serve(args) -> int:
    try:
        from stream.dashboard import server
    except ImportError as e:
        raise InputError(f"needs the 'dashboard' extra ({e.name} missing): pip install 'fdrl-stream[dashboard]'") \
            from None
    from stream.dashboard.server import DashboardConfig, DashboardError, Subscription, check_endpoint, curve_keys, log
    from stream.publisher import DEFAULT_ENDPOINT

    endpoints = list(dict.fromkeys(args.endpoints or [DEFAULT_ENDPOINT]))
    if args.keep < 1:
        raise DashboardError("--keep must be at least 1")
    cfg = DashboardConfig(host=args.host, port=args.port, insecure_bind_any=args.insecure_bind_any,
                          max_utterances=args.keep).validate()
    keys = curve_keys(args.curve_server_key, args.curve_secret)
    subs = [Subscription(check_endpoint(e), curve=keys) for e in endpoints]

    def ready(url: str) -> None:
        if not server.is_loopback(cfg.host):
            log(f"stream.dashboard: warning: serving beyond loopback on {cfg.host} without authentication")
        log(f"stream.dashboard: open {url}  (subscribed to {', '.join(endpoints)}; Ctrl-C to stop)")
        print(url, flush=True)  # stdout: just the address, for scripts

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.serve(cfg, subs, ready=ready, stop=stop)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:  # Ctrl-C is how a dashboard ends: a clean stop, exit 0
        pass
    log("stream.dashboard: stopped")
    return 0

if __name__ == "__main__":
    sys.exit(main())
