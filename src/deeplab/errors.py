"""The one exception type for bad user input (files, arrays, arguments)."""


class InputError(ValueError):
    """Bad input from the user; the message names the file or argument at fault.

    The CLI turns it into ``deeplab <command>: error: <message>`` and exit code 2.
    """
