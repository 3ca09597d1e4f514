"""The ``deeplab`` command and ``python -m deeplab``: signal handling first, then the CLI.

Until the CLI has taken over, Ctrl-C (SIGINT) and SIGTERM end the process at once with 130 / 143 and one
line, so a signal during start-up (imports) never prints a traceback. deeplab.cli.main then installs its
own handlers, which let commands finish cleanly. After an interrupted command (exit 130 / 143) the process
ends without the interpreter's finalisation: a signal can leave a library mid-way (numba's LLVM compiler,
whose teardown then crashes), and the command has already written or removed its files.
"""

import os
import signal
import sys


def _exit_handler(code: int, word: str):
    def handler(signum, frame) -> None:
        os.write(2, f"deeplab: {word}\n".encode())
        os._exit(code)

    return handler


def run() -> None:
    signal.signal(signal.SIGINT, _exit_handler(130, "interrupted"))
    signal.signal(signal.SIGTERM, _exit_handler(143, "terminated"))
    from deeplab.cli import main

    code = main()
    if code in (130, 143):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
