"""The ``deeplab`` command and ``python -m deeplab``: signal handling first, then the CLI.

Until the CLI has taken over, Ctrl-C (SIGINT) and SIGTERM end the process at once with 130 / 143 and one
line, so a signal during start-up (imports) never prints a traceback. deeplab.cli.main then installs its
own handlers, which let commands finish cleanly.
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

    sys.exit(main())


if __name__ == "__main__":
    run()
