"""ZeroMQ publisher: multipart [topic, json]; never blocks the pipeline, and bounded whatever clients send.

Outbound: each subscriber has a bounded queue (SNDHWM); when it is full that subscriber's messages are
dropped, so one stalled client cannot slow the pipeline or starve the others (it sees the gap in `seq`).
Sends are NOBLOCK; anything the socket still refuses is counted in `failures`.

Inbound: a client can only send subscriptions, and those are limited. Every inbound message is capped at
MAX_INBOUND_BYTES (ZMQ_MAXMSGSIZE: a peer that sends more, or announces more in a frame header, is
disconnected before anything is allocated), and the socket is an XPUB in manual mode: a subscription
is applied only when it is a prefix of one of our topics. libzmq still keeps a record of every
subscription a client sent until it disconnects, so a client that keeps sending subscriptions that
match no topic (no honest client does) gets every connection dropped: the socket is re-created on the
same address after MAX_FOREIGN_SUBSCRIPTIONS of them. Honest subscribers reconnect by themselves
(ZeroMQ does) and see the gap in `seq`.

Addresses: the endpoint is checked (scheme, host, port range) before binding, the address actually
bound is read back (`tcp://...:*` picks a free port), and binding beyond loopback needs either CURVE
(encryption, and authentication with a client-key folder) or an explicit `allow_insecure`.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fdrl_core.cli import InputError
from stream.messages import TOPICS, encode

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
# Inbound message cap. Subscriptions are a byte + a topic name; the handshake passes through the same
# limit: NULL's READY command is ~40 B, CURVE's INITIATE ~300 B.
MAX_INBOUND_BYTES = 128
MAX_INBOUND_BYTES_CURVE = 512
# libzmq records every subscription a client sends (even ones we do not apply) until that client leaves;
# a client that sends this many subscriptions matching no topic is cut off by re-creating the socket
MAX_FOREIGN_SUBSCRIPTIONS = 200
SCHEMES = ("tcp", "ipc")
ALLOWED_SUBSCRIPTIONS = frozenset(t.encode()[:i] for t in TOPICS for i in range(len(t) + 1))


class PublisherError(InputError, RuntimeError):
    """The endpoint is malformed, not allowed, or cannot be bound (one line for the user)."""


@dataclass(frozen=True)
class Endpoint:
    text: str
    scheme: str
    host: str = ""
    port: str = ""

    @property
    def loopback(self) -> bool:
        """Only this machine can connect (ipc is a local socket file)."""
        if self.scheme != "tcp":
            return True
        host = self.host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False  # '*', '0.0.0.0', an interface name or a host name


_TCP = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]/]+):(?P<port>[^:]*)$")


def parse_endpoint(text: str, *, what: str = "--endpoint") -> Endpoint:
    """A checked endpoint, or PublisherError saying what is wrong with it."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise PublisherError(f"{what} {text!r}: expected tcp://HOST:PORT or ipc://PATH")
    if scheme not in SCHEMES:
        raise PublisherError(f"{what} {text!r}: unsupported scheme {scheme!r}; use tcp://HOST:PORT or ipc://PATH")
    if scheme == "ipc":
        if not rest or rest == "*":
            raise PublisherError(f"{what} {text!r}: ipc:// needs a socket file path")
        return Endpoint(text, scheme, host=rest)
    m = _TCP.match(rest)
    if not m:
        raise PublisherError(f"{what} {text!r}: expected tcp://HOST:PORT (IPv6 as tcp://[::1]:PORT)")
    host, port = m["host"], m["port"]
    if re.fullmatch(r"[0-9.]+", host) and host != "*":  # looks like IPv4: must be one (256.1.1.1 is a typo)
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise PublisherError(f"{what} {text!r}: {host!r} is not an IPv4 address") from None
    if port not in ("*", "0"):
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise PublisherError(f"{what} {text!r}: port must be 1-65535 or * (any free port), not {port!r}")
    return Endpoint(text, scheme, host=host, port=port)


def parse_connect_endpoint(text: str, *, what: str = "--endpoint") -> Endpoint:
    """An endpoint a subscriber can connect to (stream.subscribe, the dashboard): one host and port."""
    ep = parse_endpoint(text, what=what)
    if ep.scheme == "tcp" and (ep.port in ("*", "0") or ep.host == "*"):
        raise PublisherError(f"{what} {text}: a subscriber connects to one host and port "
                             "(e.g. tcp://127.0.0.1:5556)")
    return ep


def _certificate(path: str | Path, what: str, missing: str) -> tuple[bytes, bytes | None]:
    """(public, secret or None) of a certificate file written by `python -m stream.keys`."""
    import zmq.auth

    path = Path(path).expanduser()
    if path.is_dir():
        raise PublisherError(f"{what} {path}: is a directory; give the {missing}")
    if not path.is_file():
        raise PublisherError(f"{what} {path}: no such file (the {missing} from python -m stream.keys)")
    try:
        return zmq.auth.load_certificate(str(path))
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise PublisherError(f"{what} {path}: not a CURVE certificate ({e})") from None


def load_secret_key(path: str | Path, what: str = "--curve-secret") -> tuple[bytes, bytes]:
    """(public, secret) from a secret certificate written by `python -m stream.keys`."""
    public, secret = _certificate(path, what, "*.key_secret file")
    if not secret:
        raise PublisherError(f"{what} {Path(path).expanduser()}: holds only a public key; give the *.key_secret file")
    return public, secret


def load_public_key(path: str | Path, what: str = "--curve-server-key") -> bytes:
    return _certificate(path, what, "server's *.key file")[0]


def add_subscriber_curve_args(ap, publisher: str = "the publisher") -> None:
    """--curve-server-key / --curve-secret, for every subscribing command (stream.subscribe, the dashboard)."""
    sec = ap.add_argument_group(f"CURVE ({publisher} started with --curve-secret)")
    sec.add_argument("--curve-server-key", metavar="FILE",
                     help=f"{publisher}'s public key file (NAME.key from python -m stream.keys)")
    sec.add_argument("--curve-secret", metavar="FILE",
                     help="this subscriber's secret key file (NAME.key_secret); its NAME.key must be in the "
                          "publisher's --curve-clients folder. Default: a throw-away key pair (accepted only "
                          "by a publisher without --curve-clients)")


def subscriber_curve_keys(server_key_file: str | None, secret_file: str | None) -> tuple[bytes, bytes, bytes] | None:
    """(server public, own public, own secret) for a CURVE subscriber, or None for plaintext."""
    if not server_key_file:
        if secret_file:
            raise PublisherError("--curve-secret needs --curve-server-key (the publisher's public key)")
        return None
    import zmq

    server = load_public_key(server_key_file)
    public, secret = load_secret_key(secret_file) if secret_file else zmq.curve_keypair()
    return server, public, secret


@dataclass
class Security:
    """CURVE for the publisher: the server's secret certificate, and optionally a folder of client
    public keys (*.key) that may subscribe; without it any client that knows the server key may."""
    secret_key_file: str | None = None
    client_keys_dir: str | None = None
    allow_insecure: bool = False  # bind beyond loopback without CURVE (a deliberate choice)

    @property
    def curve(self) -> bool:
        return bool(self.secret_key_file)


class Publisher:
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, sndhwm: int = 1000, linger_ms: int = 2000,
                 security: Security | None = None):
        import zmq

        self.zmq = zmq
        self.requested = parse_endpoint(endpoint)
        self.security = security = security or Security()
        if security.client_keys_dir and not security.curve:
            raise PublisherError("--curve-clients needs --curve-secret (the server's own key)")
        if not self.requested.loopback and not security.curve and not security.allow_insecure:
            raise PublisherError(
                f"--endpoint {endpoint} accepts subscribers from other machines, unencrypted and "
                "unauthenticated; use CURVE (--curve-secret, keys from python -m stream.keys) or, on a "
                "trusted network, say so with --insecure-bind-any")
        keys = load_secret_key(security.secret_key_file) if security.curve else None
        clients_dir = None
        if security.client_keys_dir:
            clients_dir = Path(security.client_keys_dir).expanduser()
            if not clients_dir.is_dir() or not any(clients_dir.glob("*.key")):
                raise PublisherError(f"--curve-clients {clients_dir}: expected a folder of client *.key files")
        self.ctx = zmq.Context.instance()
        self.auth = None
        if clients_dir is not None:
            from zmq.auth.thread import ThreadAuthenticator

            self.auth = ThreadAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve(domain="*", location=str(clients_dir))
        self.sndhwm, self.linger_ms, self.keys = sndhwm, linger_ms, keys
        self._subs_stop = threading.Event()
        self.sock = self._socket()
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as e:
            self.sock.close(0)
            self._stop_auth()
            if e.errno == errno.EADDRINUSE:
                raise PublisherError(f"cannot publish on {endpoint}: address already in use "
                                     "(another stream running? choose another --endpoint)") from None
            reason = (e.strerror or str(e)).split(" (addr=")[0].rstrip(".")
            raise PublisherError(f"cannot publish on {endpoint}: {reason}") from None
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()  # the real port for ':*'
        self.lock = threading.Lock()  # the heartbeat thread, the worker and the subscription thread share it
        self.sent = 0
        self.failures = 0
        self.rejected_subscriptions = 0
        self.resets = 0  # times the socket was re-created to cut off a client flooding subscriptions
        self._foreign = 0
        self.closed = False
        self.taps: list = []  # callables(topic, msg) that also get every message sent (stream.run --dashboard/--report)
        self._subs = threading.Thread(target=self._serve_subscriptions, name="subscriptions", daemon=True)
        self._subs.start()

    def _socket(self):
        zmq = self.zmq
        sock = self.ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, self.sndhwm)
        sock.setsockopt(zmq.LINGER, self.linger_ms)  # at exit, give queued messages this long to leave
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES_CURVE if self.keys is not None else MAX_INBOUND_BYTES)
        # few inbound messages in flight, so libzmq cannot take in many more subscriptions than we have seen
        sock.setsockopt(zmq.RCVHWM, 10)
        sock.setsockopt(zmq.XPUB_MANUAL, 1)  # we decide which subscriptions are applied
        if self.requested.host.startswith("["):  # an IPv6 address: libzmq needs to be told
            sock.setsockopt(zmq.IPV6, 1)
        if self.keys is not None:
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys[1])
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys[0])
        return sock

    def _reset(self) -> None:
        """Drop every connection (and what libzmq recorded for them) by re-creating the socket on the same
        address. Called with the lock held."""
        zmq = self.zmq
        self.sock.close(0)
        self.resets += 1
        self._foreign = 0
        for _ in range(100):  # the old listener is closed asynchronously by libzmq's I/O thread
            sock = self._socket()
            try:
                sock.bind(self.endpoint)
                self.sock = sock
                return
            except zmq.ZMQError:
                sock.close(0)
                time.sleep(0.02)
        self.closed = True  # the address could not be had back: publish nothing rather than crash

    @property
    def curve(self) -> bool:
        return self.security.curve

    @property
    def loopback(self) -> bool:
        return self.requested.loopback

    def _serve_subscriptions(self) -> None:
        """Apply (un)subscriptions that name one of our topics (or a prefix of one); ignore the rest."""
        zmq = self.zmq
        while not self._subs_stop.wait(0.02):
            with self.lock:
                if self.closed:
                    return
                # drain everything queued: libzmq moves inbound subscriptions to an unbounded list on
                # every socket call, so they must be consumed as fast as they come (each is <= 1 KB)
                for _ in range(100_000):
                    try:
                        msg = self.sock.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    except zmq.ZMQError:
                        return
                    if not msg or msg[0] not in (0, 1):
                        continue
                    topic = msg[1:]
                    if topic not in ALLOWED_SUBSCRIPTIONS:
                        self.rejected_subscriptions += 1
                        self._foreign += 1
                        if self._foreign >= MAX_FOREIGN_SUBSCRIPTIONS:
                            self._reset()
                            break
                        continue
                    self.sock.setsockopt(zmq.SUBSCRIBE if msg[0] == 1 else zmq.UNSUBSCRIBE, topic)

    def send(self, topic: str, msg: dict) -> bool:
        data = encode(msg)
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.send_multipart([topic.encode(), data], flags=self.zmq.NOBLOCK)
                self.sent += 1
                ok = True
            except self.zmq.Again:
                self.failures += 1
                ok = False
        for tap in self.taps:  # in-process views see every message, status included, even when no one subscribes
            tap(topic, msg)
        return ok

    def _stop_auth(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None

    def close(self) -> None:
        self._subs_stop.set()
        with self.lock:
            if not self.closed:
                self.closed = True
                self.sock.close()  # honours LINGER: queued messages still go out
        self._stop_auth()
