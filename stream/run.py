"""Placeholder until the streaming run-time lands (issue: streaming run-time)."""

import sys

if __name__ == "__main__":
    print("stream.run: the streaming run-time is not yet available in this version", file=sys.stderr)
    sys.exit(2)
