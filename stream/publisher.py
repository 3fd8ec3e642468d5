"""ZeroMQ PUB: multipart [topic, json]; never blocks the pipeline.

A PUB socket keeps a bounded queue (SNDHWM) per subscriber and drops that subscriber's messages when it
is full, so one stalled client cannot slow the pipeline or starve the others; the client sees the gap in
`seq`. Sends are NOBLOCK; anything the socket still refuses is counted in `send_failures`.
"""

from __future__ import annotations

import errno
import threading

from stream.messages import encode

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"


class PublisherError(RuntimeError):
    """The endpoint cannot be bound (one line for the user)."""


class Publisher:
    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, sndhwm: int = 1000, linger_ms: int = 2000):
        import zmq

        self.zmq = zmq
        self.endpoint = endpoint
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, sndhwm)
        self.sock.setsockopt(zmq.LINGER, linger_ms)  # at exit, give queued messages this long to leave
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as e:
            self.sock.close(0)
            if e.errno == errno.EADDRINUSE:
                raise PublisherError(f"cannot publish on {endpoint}: address already in use "
                                     "(another stream running? choose another --endpoint)") from None
            raise PublisherError(f"cannot publish on {endpoint}: {e.strerror}") from None
        self.lock = threading.Lock()  # the heartbeat thread and the worker both publish
        self.sent = 0
        self.failures = 0
        self.closed = False

    def send(self, topic: str, msg: dict) -> bool:
        data = encode(msg)
        with self.lock:
            if self.closed:
                return False
            try:
                self.sock.send_multipart([topic.encode(), data], flags=self.zmq.NOBLOCK)
            except self.zmq.Again:
                self.failures += 1
                return False
            self.sent += 1
            return True

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.sock.close()  # honours LINGER: queued messages still go out
