"""The publisher facing the network: endpoint checks, the real bound address, inbound limits against
hostile clients (huge frames, huge or endless subscriptions), and CURVE encryption + authentication."""

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest
import zmq

from stream.messages import MessageFactory, validate
from stream.publisher import Publisher, PublisherError, Security, parse_endpoint
from tests.test_stream_support import REPO, clean_env

EMOTION = dict(utterance_id=0, start=0.0, end=1.0, partial=False, revision=1, transcript="hi", text_used=True,
               text_dropped=None, label="happy", scores={"happy": 0.9, "sad": 0.1}, confidence=0.9,
               modalities=("speech", "text"), asr_ms=1.0, emotion_ms=1.0, eos_to_publish_ms=1.0, model="m")


def _recv_one(sock, timeout_s: float = 5.0):
    if sock.poll(int(timeout_s * 1000)):
        return sock.recv_multipart()
    return None


def _pump(pub: Publisher, sock, want: int = 1, timeout_s: float = 5.0) -> list:
    """Publish until `sock` has received `want` messages (subscriptions take a moment to arrive)."""
    msgs = MessageFactory("test")
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        pub.send("emotion", msgs.emotion(**EMOTION))
        if sock.poll(50):
            got.append(sock.recv_multipart())
    return got


@pytest.mark.parametrize("endpoint, why", [
    ("tcp://127.0.0.1:99999", "port must be 1-65535"),
    ("tcp://127.0.0.1:-1", "port must be"),
    ("tcp://127.0.0.1:http", "port must be"),
    ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
    ("udp://127.0.0.1:5556", "unsupported scheme 'udp'"),
    ("127.0.0.1:5556", "expected tcp://HOST:PORT"),
    ("ipc://", "socket file path"),
])
def test_malformed_endpoints_are_refused_before_binding(endpoint, why):
    with pytest.raises(PublisherError, match=why):
        Publisher(endpoint)


def test_wildcard_port_is_resolved_to_the_real_bound_address():
    pub = Publisher("tcp://127.0.0.1:*")
    try:
        host, port = pub.endpoint.rsplit(":", 1)
        assert host == "tcp://127.0.0.1" and 1 <= int(port) <= 65535
        sub = zmq.Context.instance().socket(zmq.SUB)
        sub.connect(pub.endpoint)
        sub.subscribe(b"emotion")
        assert _pump(pub, sub), "a client reaches the printed address"
        sub.close(0)
    finally:
        pub.close()


def test_loopback_detection():
    assert parse_endpoint("tcp://127.0.0.1:1").loopback and parse_endpoint("tcp://localhost:1").loopback
    assert parse_endpoint("tcp://[::1]:1").loopback and parse_endpoint("ipc:///tmp/x").loopback
    for wide in ("tcp://0.0.0.0:1", "tcp://*:1", "tcp://eth0:1", "tcp://192.168.1.5:1", "tcp://[::]:1"):
        assert not parse_endpoint(wide).loopback, wide


def test_non_loopback_bind_needs_curve_or_an_explicit_flag():
    with pytest.raises(PublisherError, match="--insecure-bind-any"):
        Publisher("tcp://0.0.0.0:*")
    pub = Publisher("tcp://0.0.0.0:*", security=Security(allow_insecure=True))
    try:
        assert not pub.loopback and pub.endpoint.startswith("tcp://0.0.0.0:")
    finally:
        pub.close()


PUBLISHER = textwrap.dedent("""
    import os, sys, time
    from stream.messages import MessageFactory
    from stream.publisher import Publisher
    pub = Publisher("tcp://127.0.0.1:*")
    print(pub.endpoint, flush=True)
    msgs = MessageFactory("victim")
    parent = os.getppid()
    while os.getppid() == parent:  # never outlive the test
        pub.send("status", msgs.status(kind="heartbeat", source="x", audio_time=0, uptime_s=0,
                                       counters={}, rtf=None, rss_mb=None))
        time.sleep(0.02)
""")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def victim():
    env = clean_env(PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        endpoint = proc.stdout.readline().strip()
        assert endpoint.startswith("tcp://"), "publisher did not start"
        time.sleep(0.5)
        yield proc, endpoint
    finally:
        proc.kill()
        proc.wait(10)


def _zmtp_connect(endpoint: str) -> socket.socket:
    """A raw TCP client that speaks just enough ZMTP 3.0 (NULL mechanism) to be a SUB peer."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    s.sendall(greeting)
    got = b""
    while len(got) < 64:
        chunk = s.recv(64 - len(got))
        assert chunk, "server closed during the greeting"
        got += chunk
    prop = b"\x0bSocket-Type" + struct.pack(">I", 3) + b"SUB"
    body = b"\x05READY" + prop
    s.sendall(bytes([0x04, len(body)]) + body)
    return s


def _closed_by_peer(s: socket.socket, timeout_s: float = 5.0) -> bool:
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
        if data == b"":
            return True
    return False


def test_a_frame_header_claiming_8_gib_gets_the_client_disconnected(victim):
    proc, endpoint = victim
    before = _rss_mb(proc.pid)
    s = _zmtp_connect(endpoint)
    s.sendall(bytes([0x02]) + struct.pack(">Q", 8 << 30))  # long frame, 8 GiB announced
    try:
        for _ in range(64):  # then start streaming the "message"
            s.sendall(b"\x01" * 65536)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert _closed_by_peer(s), "the publisher kept reading a message it will never accept"
    s.close()
    assert _rss_mb(proc.pid) - before < 20


def _frame(body: bytes) -> bytes:
    if len(body) < 256:
        return bytes([0x00, len(body)]) + body
    return bytes([0x02]) + struct.pack(">Q", len(body)) + body


def test_huge_and_endless_subscriptions_do_not_grow_the_publisher(victim):
    # raw clients: libzmq's own SUB socket cannot even hold a 4 MB subscription (its trie recurses per byte)
    proc, endpoint = victim
    ctx = zmq.Context.instance()
    honest = ctx.socket(zmq.SUB)
    honest.connect(endpoint)
    honest.subscribe(b"status")
    assert _recv_one(honest), "honest subscriber receives"
    before = _rss_mb(proc.pid)
    for _ in range(3):  # a 4 MB subscription, three times
        s = _zmtp_connect(endpoint)
        try:
            s.sendall(_frame(b"\x01" + b"x" * (4 << 20)))
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _closed_by_peer(s), "a 4 MB subscription is refused by disconnecting its sender"
        s.close()
    for _ in range(5):  # endless distinct subscriptions of an allowed size, again and again
        s = _zmtp_connect(endpoint)
        try:
            s.sendall(b"".join(_frame(b"\x01status-%08d-" % i + b"y" * 100) for i in range(50_000)))
        except (BrokenPipeError, ConnectionResetError):
            pass  # cut off: what we want
        time.sleep(1)
        s.close()
    grown = _rss_mb(proc.pid) - before
    while honest.poll(0):
        honest.recv_multipart()
    assert _recv_one(honest), "the honest subscriber is still served"
    honest.close(0)
    assert grown < 30, f"publisher grew {grown:.0f} MB"


def test_only_topic_subscriptions_are_applied():
    pub = Publisher("tcp://127.0.0.1:*")
    ctx = zmq.Context.instance()
    try:
        sub = ctx.socket(zmq.SUB)
        sub.connect(pub.endpoint)
        sub.subscribe(b"emo")  # a prefix of a topic: fine
        assert _pump(pub, sub)
        odd = ctx.socket(zmq.SUB)
        odd.connect(pub.endpoint)
        odd.subscribe(b"emotion-and-then-some")
        everything = ctx.socket(zmq.SUB)
        everything.connect(pub.endpoint)
        everything.subscribe(b"")
        assert _pump(pub, everything)
        assert not odd.poll(200)
        assert pub.rejected_subscriptions >= 1
        for s in (sub, odd, everything):
            s.close(0)
    finally:
        pub.close()


@pytest.fixture
def keys(tmp_path):
    env = clean_env(PYTHONPATH=str(REPO))
    for name in ("server", "alice", "mallory"):
        res = subprocess.run([sys.executable, "-m", "stream.keys", "--out", str(tmp_path / "keys"), "--name", name],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "public key" in res.stdout
    k = tmp_path / "keys"
    assert (os.stat(k / "server.key_secret").st_mode & 0o077) == 0, "secret keys are private"
    res = subprocess.run([sys.executable, "-m", "stream.keys", "--out", str(k), "--name", "server"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "already exists" in res.stderr and "Traceback" not in res.stderr
    (k / "clients").mkdir()
    (k / "clients" / "alice.key").write_bytes((k / "alice.key").read_bytes())
    return k


def _curve_sub(keys, client: str | None, endpoint: str):
    import zmq.auth

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    if client is not None:
        server_pub, _ = zmq.auth.load_certificate(str(keys / "server.key"))
        pub, sec = zmq.auth.load_certificate(str(keys / f"{client}.key_secret"))
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_pub)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, pub)
        sock.setsockopt(zmq.CURVE_SECRETKEY, sec)
    sock.connect(endpoint)
    sock.subscribe(b"emotion")
    return sock


def test_curve_only_authorised_clients_receive(keys):
    sec = Security(secret_key_file=str(keys / "server.key_secret"), client_keys_dir=str(keys / "clients"))
    pub = Publisher("tcp://0.0.0.0:*", security=sec)  # non-loopback is fine with CURVE
    endpoint = pub.endpoint.replace("0.0.0.0", "127.0.0.1")
    try:
        alice, mallory, plain = (_curve_sub(keys, c, endpoint) for c in ("alice", None, "mallory"))
        assert _pump(pub, alice), "an authorised client receives"
        for _ in range(20):
            pub.send("emotion", MessageFactory("t").emotion(**EMOTION))
        time.sleep(0.3)
        assert not mallory.poll(100) and not plain.poll(100), "plaintext and unknown keys receive nothing"
        for s in (alice, mallory, plain):
            s.close(0)
    finally:
        pub.close()


def test_subscribe_cli_speaks_curve(keys):
    sec = Security(secret_key_file=str(keys / "server.key_secret"), client_keys_dir=str(keys / "clients"))
    pub = Publisher("tcp://127.0.0.1:*", security=sec)
    env = clean_env(PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "stream.subscribe", "--endpoint", pub.endpoint, "--json", "--count", "1",
           "--curve-server-key", str(keys / "server.key"), "--curve-secret", str(keys / "alice.key_secret")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        msgs = MessageFactory("t")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            pub.send("emotion", msgs.emotion(**EMOTION))
            time.sleep(0.05)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        pub.close()
    assert proc.returncode == 0, err
    msg = json.loads(out.splitlines()[0])
    validate("emotion", msg)
    bad = subprocess.run([sys.executable, "-m", "stream.subscribe", "--endpoint", "tcp://127.0.0.1:5556",
                          "--curve-server-key", str(keys / "missing.key")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "missing.key" in bad.stderr and "Traceback" not in bad.stderr
