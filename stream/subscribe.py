"""python -m stream.subscribe: watch a running stream (what any ZeroMQ client would do).

Prints one human-readable line per final emotion by default, or the raw JSON messages with --json.
A gap in a topic's `seq` means this subscriber missed messages (it was too slow); that is reported too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from stream.messages import TOPICS, format_line, validate
from stream.publisher import DEFAULT_ENDPOINT


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m stream.subscribe", description=__doc__.split("\n\n")[0],
                                 epilog="example: python -m stream.subscribe --topics emotion,status --json",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help="where stream.run publishes (default: %(default)s)")
    ap.add_argument("--topics", default="emotion",
                    help=f"comma-separated, from {','.join(TOPICS)} (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print the raw JSON messages, one per line")
    ap.add_argument("--partials", action="store_true", help="human output: also partial transcripts and emotions")
    ap.add_argument("--validate", action="store_true", help="check every message against stream/schema/*.json")
    ap.add_argument("--count", type=int, default=0, metavar="N", help="exit after N final emotion messages")
    ap.add_argument("--timeout", type=float, default=0, metavar="S",
                    help="exit when no message has come for S seconds (counted from the first message)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    topics = [t.strip() for t in args.topics.split(",") if t.strip()]
    bad = [t for t in topics if t not in TOPICS]
    if bad or not topics:
        print(f"stream.subscribe: unknown topic(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TOPICS)}",
              file=sys.stderr)
        return 2
    import zmq

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(args.endpoint)
    except zmq.ZMQError as e:
        print(f"stream.subscribe: cannot connect to {args.endpoint}: {e.strerror}", file=sys.stderr)
        return 2
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    last_seq: dict[tuple[str, str], int] = {}
    finals, invalid = 0, 0
    last_msg = None
    try:
        while True:
            if not sock.poll(200):
                if args.timeout and last_msg is not None and time.monotonic() - last_msg > args.timeout:
                    break
                continue
            last_msg = time.monotonic()
            topic_b, payload = sock.recv_multipart()[:2]
            topic = topic_b.decode("utf-8", "replace")
            if topic not in topics:  # prefix match of SUBSCRIBE (e.g. a future "emotion2")
                continue
            try:
                msg = json.loads(payload)
            except ValueError:
                print(f"stream.subscribe: undecodable message on {topic!r}", file=sys.stderr)
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
                print(format_line(topic, msg), flush=True)
            if topic == "emotion" and not msg.get("partial"):
                finals += 1
                if args.count and finals >= args.count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 1 if invalid else 0


def _show(topic: str, msg: dict, partials: bool) -> bool:
    if topic == "status":
        return True
    return partials or not msg.get("partial")


if __name__ == "__main__":
    sys.exit(main())
