"""The ``deeplab`` command: a thin dispatcher over ``deeplab.commands.<name>`` modules.

Each command module defines ``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``, and imports
heavy dependencies (torch, numba) inside ``run``: ``deeplab --help`` and ``deeplab <command> --help`` import
neither. One error boundary for every command: exit 0 success, 2 bad input or a failed read/write (one line
naming the file or flag, never a traceback), 130 on SIGINT (Ctrl-C) and 143 on SIGTERM at any moment, 1 for an
unexpected failure (a bug: that one keeps its traceback).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from deeplab.errors import InputError

# subcommand name -> module under deeplab.commands
COMMANDS: dict[str, str] = {
    "segment": "segment",
    "crf": "crf",
    "train": "train",
    "evaluate": "evaluate",
    "crf-search": "crf_search",
    "convert": "convert",
    "export": "export",
    "benchmark": "benchmark",
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT."""


_received: list[type[BaseException]] = []  # what the handlers below raised during the current main()


def _interrupt(signum, frame) -> None:
    _received.append(KeyboardInterrupt)
    raise KeyboardInterrupt


def _terminate(signum, frame) -> None:
    _received.append(Terminated)
    raise Terminated


def build_parser() -> argparse.ArgumentParser:
    from deeplab import __version__

    parser = argparse.ArgumentParser(prog="deeplab", description="DeepLab v1: atrous VGG-16 + fully connected CRF.")
    parser.add_argument("--version", action="version", version=f"deeplab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"deeplab.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def one_line(error: BaseException) -> str:
    """A user-facing message on one line. Errors re-raised from worker processes (torch's DataLoader embeds
    the worker's whole traceback in the message) keep only the original message; OS errors name the file."""
    text = str(error).strip() or type(error).__name__
    if "Traceback (most recent call last)" in text:
        last = text.splitlines()[-1]
        head, sep, rest = last.partition(": ")
        text = rest if sep and head.split(".")[-1].endswith(("Error", "Exception")) else last
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {error.strerror or text}"
    return " ".join(text.split())


def _quiet_interruptions(hook):
    """sys.unraisablehook that drops the signals our handlers raised inside callbacks that cannot raise (ctypes
    callbacks of llvmlite while numba compiles print "Exception ignored in ..." with a traceback): the
    signal is still honoured, by _interruption, when the command fails or ends."""

    def quiet(unraisable) -> None:
        if not isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
            hook(unraisable)

    return quiet


def _interruption(error: BaseException) -> type | None:
    """KeyboardInterrupt or Terminated if ``error`` came from one (numba's dispatcher and compiler wrap a
    signal raised while they run in other exception types; a signal that lands inside a library's import can
    leave it half-initialised and fail later with an unrelated error), else None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (KeyboardInterrupt, Terminated)):
            return type(seen) if isinstance(seen, Terminated) else KeyboardInterrupt
        seen = seen.__context__ or seen.__cause__
    text = str(error)
    if "KeyboardInterrupt" in text:
        return KeyboardInterrupt
    if "Terminated" in text:
        return Terminated
    return _received[-1] if _received else None


def main(argv: list[str] | None = None) -> int:
    main_thread = threading.current_thread() is threading.main_thread()
    old = {}
    if main_thread:  # SIGINT raises KeyboardInterrupt, SIGTERM Terminated: each command can finish cleanly
        old = {
            signal.SIGINT: signal.signal(signal.SIGINT, _interrupt),
            signal.SIGTERM: signal.signal(signal.SIGTERM, _terminate),
        }
    unraisable_hook = sys.unraisablehook
    sys.unraisablehook = _quiet_interruptions(unraisable_hook)
    _received.clear()
    command = "deeplab"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        command = f"deeplab {args.command}"
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{command}: terminated", file=sys.stderr)
        return 143
    except (InputError, OSError) as e:
        print(f"{command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # numba wraps a signal raised inside compiled code or its compiler (SystemError, ...)
        cause = _interruption(e)
        if cause is None:
            raise
        print(f"{command}: {'terminated' if cause is Terminated else 'interrupted'}", file=sys.stderr)
        return 143 if cause is Terminated else 130
    finally:
        sys.unraisablehook = unraisable_hook
        for sig, handler in old.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
