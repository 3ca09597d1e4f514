"""The ``deeplab`` command: a thin dispatcher over ``deeplab.commands.<name>`` modules.

Each command module defines ``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``,
and imports heavy dependencies inside ``run`` so that ``deeplab --help`` stays fast.
Exit codes: 0 success, 1 unexpected failure, 2 bad input (usage, missing/corrupt file), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from deeplab.errors import InputError

# subcommand name -> module under deeplab.commands
COMMANDS: dict[str, str] = {
    "train": "train",
    "segment": "segment",
    "evaluate": "evaluate",
    "crf-search": "crf_search",
    "convert": "convert",
    "export": "export",
    "benchmark": "benchmark",
    "crf": "crf",
}


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except InputError as e:
        print(f"deeplab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"deeplab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deeplab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
