"""The dashboard's web side (aiohttp): the page, its static files, and server-sent events to the browsers.

Messages reach the hub either from ZeroMQ subscriptions (python -m stream.dashboard) or directly from a
run in the same process (stream.run --dashboard). Every page gets the compact history first (StreamState),
then each message as it arrives, batched per write. A page that cannot keep up is not allowed to grow
memory: its queue is bounded, and when it overflows the page is sent a fresh snapshot instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import sys
import threading
from dataclasses import dataclass

from aiohttp import web

from stream.dashboard import STATIC_DIR, DashboardError
from stream.dashboard.state import RESET, StreamState
from stream.messages import TOPICS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
REPLAYED = json.dumps({"t": "replayed"})
STATIC_FILES = ("render.js", "live.js", "style.css")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass
class DashboardConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port
    insecure_bind_any: bool = False  # serve beyond loopback (the page has no authentication)
    max_utterances: int = 2000  # per stream, kept for pages that open late
    client_queue: int = 10000  # messages waiting for one slow page before it is resynchronised

    def validate(self) -> DashboardConfig:
        if not 0 <= self.port <= 65535:
            raise DashboardError(f"port {self.port} is not in 0-65535")
        if not is_loopback(self.host) and not self.insecure_bind_any:
            raise DashboardError(f"refusing to serve the dashboard on {self.host!r}: it would be reachable from other "
                                 "machines without authentication; on a trusted network say so with "
                                 "--insecure-bind-any")
        return self


class _Client:
    def __init__(self, size: int):
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.overflowed = False
        self.closing = False


class Hub:
    """Stream history + connected pages. Lives on one event loop; `feed_threadsafe` is for other threads."""

    def __init__(self, cfg: DashboardConfig):
        self.cfg = cfg
        self.state = StreamState(max_utterances=cfg.max_utterances)
        self.clients: set[_Client] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def feed(self, topic: str, msg: dict, endpoint: str | None = None) -> None:
        text = self.state.add(topic, msg, endpoint)
        if text is not None:
            self._broadcast(text)

    def feed_threadsafe(self, topic: str, msg: dict, endpoint: str | None = None) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                self.loop.call_soon_threadsafe(self.feed, topic, msg, endpoint)

    def endpoint(self, endpoint: str, state: str, detail: str | None = None) -> None:
        self._broadcast(self.state.set_endpoint(endpoint, state, detail))

    def _broadcast(self, text: str) -> None:
        for c in self.clients:
            if c.overflowed:
                continue
            try:
                c.queue.put_nowait(text)
            except asyncio.QueueFull:
                c.overflowed = True

    def attach(self) -> tuple[_Client, list[str]]:
        """A new page: its queue and the snapshot it starts from (consistent: no await in between)."""
        c = _Client(self.cfg.client_queue)
        self.clients.add(c)
        return c, [RESET, *self.state.snapshot(), REPLAYED]

    def detach(self, c: _Client) -> None:
        self.clients.discard(c)

    def shutdown(self) -> None:
        """Let every open event stream end now, instead of waiting out the server's shutdown timeout."""
        for c in self.clients:
            c.closing = True
            with contextlib.suppress(asyncio.QueueFull):
                c.queue.put_nowait("")


HUB = web.AppKey("hub", Hub)


def _sse(items: list[str]) -> bytes:
    return b"data: [" + ",".join(items).encode("utf-8") + b"]\n\n"


async def _events(request: web.Request) -> web.StreamResponse:
    hub: Hub = request.app[HUB]
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    client, first = hub.attach()
    try:
        await resp.write(b"retry: 1000\n\n" + _sse(first))
        while True:
            try:
                text = await asyncio.wait_for(client.queue.get(), timeout=15)
            except asyncio.TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if client.closing:
                break
            batch = [text]
            while not client.queue.empty() and len(batch) < 2000:
                batch.append(client.queue.get_nowait())
            if client.closing:
                break
            if client.overflowed:  # it fell behind: start it again from the history
                while not client.queue.empty():
                    client.queue.get_nowait()
                client.overflowed = False
                batch = [RESET, *hub.state.snapshot(), REPLAYED]
            await resp.write(_sse(batch))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.detach(client)
    return resp


async def _index(request: web.Request) -> web.Response:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={"Cache-Control": "no-cache"})


async def _report(request: web.Request) -> web.Response:
    """The run so far as a self-contained HTML report (same as stream.run --report)."""
    from stream.report import build_report

    hub: Hub = request.app[HUB]
    html = build_report(hub.state.messages(), title="fdrl-stream dashboard snapshot")
    return web.Response(text=html, content_type="text/html",
                        headers={"Content-Disposition": 'attachment; filename="fdrl-report.html"'})


LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


@web.middleware
async def _headers(request: web.Request, handler):
    cfg: DashboardConfig = request.app[HUB].cfg
    if not cfg.insecure_bind_any and (request.url.host or "").strip("[]").lower() not in LOOPBACK_NAMES | {cfg.host}:
        # a page of another site that re-pointed its own name at 127.0.0.1 (DNS rebinding) must not read ours
        raise web.HTTPForbidden(text="the dashboard answers to loopback host names only\n")
    resp = await handler(request)
    resp.headers.setdefault("Content-Security-Policy", CSP)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


def make_app(hub: Hub) -> web.Application:
    app = web.Application(middlewares=[_headers])
    app[HUB] = hub
    app.router.add_get("/", _index)
    app.router.add_get("/static/{name}", _static)
    app.router.add_get("/events", _events)
    app.router.add_get("/report.html", _report)
    return app


class WebServer:
    """Runs the app on the current loop; `url` is known after start()."""

    def __init__(self, cfg: DashboardConfig, hub: Hub):
        self.cfg = cfg
        self.hub = hub
        self.runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> str:
        self.hub.loop = asyncio.get_running_loop()
        self.runner = web.AppRunner(make_app(self.hub), handle_signals=False, access_log=None,
                                    shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.cfg.host, self.cfg.port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            what = "address already in use (choose another port; 0 = any free port)" \
                if e.errno in (98, 48, 10048) else (e.strerror or str(e))
            raise DashboardError(f"cannot serve the dashboard on {self.cfg.host}:{self.cfg.port}: {what}") from None
        host, port = self.runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}/"
        return self.url

    async def stop(self) -> None:
        self.hub.shutdown()
        if self.runner is not None:
            await self.runner.cleanup()


# ------------------------------------------------------------------ ZeroMQ side


@dataclass
class Subscription:
    endpoint: str
    curve: tuple[bytes, bytes, bytes] | None = None  # (server public, our public, our secret) for CURVE


def curve_keys(server_key_file: str | None, secret_file: str | None) -> tuple[bytes, bytes, bytes] | None:
    """The same key files as `stream.subscribe --curve-server-key/--curve-secret` (made by stream.keys)."""
    from stream.publisher import PublisherError, subscriber_curve_keys

    try:
        return subscriber_curve_keys(server_key_file, secret_file)
    except PublisherError as e:
        raise DashboardError(str(e)) from None


MAX_MESSAGE_BYTES = 1 << 20  # a stream message is a few kB; anything bigger is not one of ours


async def subscribe(hub: Hub, sub: Subscription, ctx) -> None:
    """Receive one endpoint's messages into the hub until cancelled; reports connection state to the page."""
    import zmq
    from zmq.utils.monitor import parse_monitor_message

    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.RCVHWM, 10000)
    if sub.curve:
        sock.setsockopt(zmq.CURVE_SERVERKEY, sub.curve[0])
        sock.setsockopt(zmq.CURVE_PUBLICKEY, sub.curve[1])
        sock.setsockopt(zmq.CURVE_SECRETKEY, sub.curve[2])
    for t in TOPICS:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                      | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    sock.connect(sub.endpoint)
    hub.endpoint(sub.endpoint, "connecting")

    async def watch() -> None:
        names = {zmq.EVENT_CONNECTED: ("connected", None), zmq.EVENT_DISCONNECTED: ("disconnected", "retrying"),
                 zmq.EVENT_HANDSHAKE_FAILED_AUTH: ("refused", "CURVE authentication failed"),
                 zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: ("refused", "protocol error (CURVE keys?)"),
                 zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: ("refused", "handshake failed")}
        while True:
            ev = parse_monitor_message(await monitor.recv_multipart())
            if ev["event"] in names:
                hub.endpoint(sub.endpoint, *names[ev["event"]])

    watcher = asyncio.ensure_future(watch())
    try:
        while True:
            frames = await sock.recv_multipart()
            if len(frames) < 2:
                continue
            topic = frames[0].decode("utf-8", "replace")
            if topic not in TOPICS:
                continue
            try:
                msg = json.loads(frames[1])
            except ValueError:
                hub.state.ignored += 1
                continue
            hub.feed(topic, msg, sub.endpoint)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)


def check_endpoint(endpoint: str) -> str:
    """A ZeroMQ endpoint we can connect to (one-line error otherwise)."""
    import zmq

    from stream.publisher import parse_connect_endpoint

    parse_connect_endpoint(endpoint, what="endpoint")
    probe = zmq.Context.instance().socket(zmq.SUB)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        probe.connect(endpoint)
    except zmq.ZMQError as e:
        raise DashboardError(f"cannot subscribe to {endpoint!r}: {e.strerror}") from None
    finally:
        probe.close(0)
    return endpoint


async def serve(cfg: DashboardConfig, subs: list[Subscription], ready=None, stop: asyncio.Event | None = None) -> None:
    """python -m stream.dashboard: serve until `stop` is set (or forever)."""
    import zmq.asyncio

    hub = Hub(cfg)
    server = WebServer(cfg, hub)
    url = await server.start()
    ctx = zmq.asyncio.Context()
    tasks = [asyncio.ensure_future(subscribe(hub, s, ctx)) for s in subs]
    try:
        if ready is not None:
            ready(url)
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.stop()
        ctx.term()


class DashboardThread:
    """The dashboard inside another program (stream.run --dashboard): its own event loop in a daemon thread."""

    def __init__(self, cfg: DashboardConfig, label: str | None = None):
        self.cfg = cfg.validate()
        self.label = label
        self.hub = Hub(cfg)
        self.server = WebServer(cfg, self.hub)
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="dashboard", daemon=True)

    def start(self) -> str:
        self.thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self.server.url

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as e:  # reported by start()
            self._error = e
            self._started.set()
            return
        if self.label:  # the page names the endpoint this run publishes on (no subscription: messages come in-process)
            self.hub.endpoint(self.label, "connected", "this run")
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()

    def send(self, topic: str, msg: dict) -> None:
        """Called from the pipeline's threads for every published message."""
        self.hub.feed_threadsafe(topic, msg, self.label)

    def close(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
