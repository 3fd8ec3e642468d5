"""python -m stream.subscribe: watch a running stream (what any ZeroMQ client would do).

Prints one human-readable line per final emotion by default, or the raw JSON messages with --json.
A gap in a topic's `seq` means this subscriber missed messages (it was too slow); that is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from fdrl_core.cli import ArgumentParser, InputError, RunError, add_debug_flag, debug_requested, finite_float, run_main
from stream.messages import TOPICS, format_line, validate
from stream.publisher import (
    DEFAULT_ENDPOINT,
    PublisherError,
    add_subscriber_curve_args,
    parse_connect_endpoint,
    subscriber_curve_keys,
)


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m stream.subscribe", description=__doc__.split("\n\n")[0],
                        epilog="example: python -m stream.subscribe --topics emotion,status --json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="where stream.run publishes (default: %(default)s)")
    ap.add_argument("--topics", default="emotion",
                    help=f"comma-separated, from {','.join(TOPICS)} (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the raw JSON messages, one per line")
    ap.add_argument("--partials", action="store_true", help="human output: also partial transcripts and emotions")
    ap.add_argument("--validate", action="store_true", help="check every message against stream/schema/*.json")
    ap.add_argument("--count", type=int, default=0, metavar="N", help="exit after N final emotion messages")
    ap.add_argument("--timeout", type=finite_float, default=0, metavar="S",
                    help="exit when no message has come for S seconds (counted from the first message)")
    ap.add_argument("--wait", type=finite_float, default=0, metavar="S",
                    help="give up (exit 1) when not one message has come within S seconds of starting, e.g. "
                         "nothing publishes at --endpoint (default: 0 = wait for the publisher forever)")
    add_subscriber_curve_args(ap)
    add_debug_flag(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_main("stream.subscribe", lambda: _run(args), debug=debug_requested(args), input_errors=(PublisherError,))


def _connect(args):
    import zmq

    ep = parse_connect_endpoint(args.endpoint)
    keys = subscriber_curve_keys(args.curve_server_key, args.curve_secret)
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 16 * 2**20)  # a message is a few KB; a hostile publisher cannot flood us
    if ep.host.startswith("["):
        sock.setsockopt(zmq.IPV6, 1)
    if keys is not None:
        server_public, public, secret = keys
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
    try:
        sock.connect(args.endpoint)
    except zmq.ZMQError as e:
        sock.close()
        raise InputError(f"cannot connect to {args.endpoint}: {e.strerror}") from None
    return sock


def _run(args) -> int:
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    bad = [t for t in topics if t not in TOPICS]
    if bad or not topics:
        raise InputError(f"unknown topic(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TOPICS)}")
    if args.count < 0 or args.timeout < 0 or args.wait < 0:
        raise InputError("--count, --timeout and --wait must be >= 0")
    if args.count and "emotion" not in topics:
        raise InputError(f"--count counts final emotion messages; add emotion to --topics {args.topics!r}")
    if sys.stdout is None:
        raise InputError("stdout is closed: nowhere to print the messages (redirect it to a file or /dev/null)")
    import zmq

    sock = _connect(args)
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    last_seq: dict[tuple[str, str], int] = {}
    finals, invalid = 0, 0
    last_msg, started = None, time.monotonic()
    try:
        while True:
            if not sock.poll(200):
                if args.timeout and last_msg is not None and time.monotonic() - last_msg > args.timeout:
                    break
                if args.wait and last_msg is None and time.monotonic() - started > args.wait:
                    raise RunError(f"no message from {args.endpoint} in {args.wait:g} s: is stream.run publishing "
                                   "there (same --endpoint, same CURVE keys)?")
                continue
            last_msg = time.monotonic()
            parts = sock.recv_multipart()
            if len(parts) < 2:
                print("stream.subscribe: a message without a body (not from stream.run?)", file=sys.stderr)
                continue
            topic_b, payload = parts[:2]
            topic = topic_b.decode("utf-8", "replace")
            if topic not in topics:  # prefix match of SUBSCRIBE (e.g. a future "emotion2")
                continue
            try:
                msg = json.loads(payload)
            except ValueError:
                print(f"stream.subscribe: undecodable message on {topic!r}", file=sys.stderr)
                continue
            if not isinstance(msg, dict):
                print(f"stream.subscribe: a {topic} message that is not a JSON object", file=sys.stderr)
                continue
            if args.validate:
                try:
                    validate(topic, msg)
                except Exception as e:  # jsonschema.ValidationError; keep going
                    invalid += 1
                    print(f"stream.subscribe: invalid {topic} message: {str(e).splitlines()[0]}", file=sys.stderr)
            key = (msg.get("stream_id", ""), topic)
            seq = msg.get("seq")
            if isinstance(seq, int) and key in last_seq and seq > last_seq[key] + 1:
                print(f"stream.subscribe: missed {seq - last_seq[key] - 1} {topic} message(s)", file=sys.stderr)
            if isinstance(seq, int):
                last_seq[key] = seq
            if args.json:
                print(payload.decode("utf-8", "replace"), flush=True)  # as published; `schema` names the topic
            elif _show(topic, msg, args.partials):
                try:
                    line = format_line(topic, msg)
                except (KeyError, TypeError, ValueError, AttributeError) as e:
                    print(f"stream.subscribe: malformed {topic} message ({type(e).__name__}: {e}); "
                          "--json shows it as sent", file=sys.stderr)
                    continue
                print(line, flush=True)
            if topic == "emotion" and not msg.get("partial"):
                finals += 1
                if args.count and finals >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `| head`: the reader is gone, which is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as e:  # a full disk: what was received could not be kept, so the run failed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise RunError(f"cannot write to stdout: {e.strerror or e}") from None
    finally:
        sock.close()
    return 1 if invalid else 0


def _show(topic: str, msg: dict, partials: bool) -> bool:
    if topic == "status":
        return True
    return partials or not msg.get("partial")


if __name__ == "__main__":
    sys.exit(main())
