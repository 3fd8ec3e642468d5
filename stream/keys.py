"""python -m stream.keys: make CURVE key pairs for an encrypted, authenticated publisher.

Writes NAME.key (public: give it to the other side) and NAME.key_secret (keep it; readable only by you)
in ZeroMQ's certificate format. Typical setup:

  python -m stream.keys --out keys --name server            # on the publishing machine
  python -m stream.keys --out keys --name alice             # once per subscriber
  mkdir keys/clients && cp keys/alice.key keys/clients/     # who may subscribe
  python -m stream.run --mic --endpoint tcp://0.0.0.0:5556 \\
      --curve-secret keys/server.key_secret --curve-clients keys/clients
  python -m stream.subscribe --endpoint tcp://HOST:5556 \\
      --curve-server-key keys/server.key --curve-secret keys/alice.key_secret
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fdrl_core.cli import ArgumentParser, InputError, add_debug_flag, debug_requested, run_main


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m stream.keys", description=__doc__.split("\n\n")[0],
                        epilog=__doc__.split("\n\n", 1)[1],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="keys", help="folder for the key files (created; default: %(default)s)")
    ap.add_argument("--name", default="server", help="file name stem: NAME.key and NAME.key_secret "
                                                      "(default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="overwrite existing key files of that name")
    add_debug_flag(ap)
    return ap


def make_keys(out: str | Path, name: str, force: bool = False) -> tuple[Path, Path]:
    import zmq
    import zmq.auth

    if not zmq.has("curve"):
        raise InputError("this libzmq was built without CURVE support")
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"--name {name!r}: expected a plain file name stem such as 'server'")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    public, secret = out / f"{name}.key", out / f"{name}.key_secret"
    existing = [p for p in (public, secret) if p.exists()]
    if existing and not force:
        raise InputError(f"{existing[0]} already exists (use --force to replace it, or another --name)")
    out.mkdir(parents=True, exist_ok=True)
    for p in existing:
        p.unlink()
    pub, sec = zmq.auth.create_certificates(str(out), name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        pub, sec = make_keys(args.out, args.name, args.force)
        print(f"public key: {pub}  (give it to the other side)")
        print(f"secret key: {sec}  (keep it private)")
        return 0

    return run_main("stream.keys", body, debug=debug_requested(args))


if __name__ == "__main__":
    sys.exit(main())
