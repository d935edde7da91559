"""What every command-line tool shares: a user error is one line and exit status 2.

`run(main)` replaces `absl.app.run(main)`: a flag error (unknown flag, bad value)
is then one line naming the flag, exit 2, like every other user error, instead of
absl's two-line FATAL message and exit 1.
"""

import sys

from absl import app, flags

EXIT_USER_ERROR = 2


def one_line(error) -> str:
    """The error's message on one line (runtimes' messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def print_error(error) -> int:
    """Prints ``error: <one line>`` to stderr; returns the user-error exit status."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return EXIT_USER_ERROR


def exit_with_error(error):
    """Prints the error as one line and exits with status 2."""
    sys.exit(print_error(error))


def parse_flags(argv):
    """absl's flag parser, a flag error as one line with exit status 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        exit_with_error(error)


def run(main):
    """`absl.app.run(main)` with one-line flag errors (`parse_flags`)."""
    app.run(main, flags_parser=parse_flags)
