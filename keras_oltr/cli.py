"""What every command-line tool shares: a user error is one line and exit status 2.

`run(main)` replaces `absl.app.run(main)`: a flag error (unknown flag, bad value)
is then one line naming the flag, exit 2, like every other user error, instead of
absl's two-line FATAL message and exit 1.
"""

import glob
import math
import os
import sys

from absl import app, flags

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def has_nvidia_gpu() -> bool:
    """Whether this machine has an NVIDIA driver with a device (Linux device files)."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.isdir("/proc/driver/nvidia")


def quiet_gpu_probe():
    """Imports TensorFlow without its CUDA probe's lines, on a machine without a GPU.

    TensorFlow's CUDA build writes "Could not find cuda drivers" and "failed call to
    cuInit" straight to the process's stderr (below Python, before its log level
    applies). Where there is no NVIDIA device those lines say nothing, so the import
    and the first device query run with file descriptor 2 muted; errors still raise.
    With a GPU nothing is muted.
    """
    if "tensorflow" in sys.modules or has_nvidia_gpu():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def one_line(error) -> str:
    """The error's message on one line (runtimes' messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def missing_package(error: ImportError, extra: str = "deploy") -> str:
    """The one-line message for a package that an optional feature needs."""
    name = error.name or str(error)
    return (
        f"this needs the package {name!r}, which the core install leaves out: "
        f"pip install 'keras-oltr[{extra}]' (in a clone: pip install -e '.[{extra}]')"
    )


def print_error(error) -> int:
    """Prints ``error: <one line>`` to stderr; returns the user-error exit status."""
    print(f"error: {one_line(error)}", file=sys.stderr)
    return EXIT_USER_ERROR


def exit_with_error(error):
    """Prints the error as one line and exits with status 2."""
    sys.exit(print_error(error))


# absl's help flags print the usage and exit with status 1; asking for help is no error.
_HELP_FLAGS = frozenset(
    f"{dashes}{name}"
    for dashes in ("-", "--")
    for name in ("?", "help", "helpshort", "helpfull", "helpxml")
)


def parse_flags(argv):
    """absl's flag parser, a flag error as one line with exit status 2, --help exit 0."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        exit_with_error(error)
    except SystemExit as exit_:
        args = argv[1 : argv.index("--")] if "--" in argv else argv[1:]
        if exit_.code == 1 and _HELP_FLAGS.intersection(args):
            sys.exit(0)
        raise


def _require_finite(name):
    """A float flag takes finite numbers only: NaN would switch off a guard it feeds."""
    flags.register_validator(
        name,
        lambda value: value is None or math.isfinite(value),
        message=f"--{name} must be a finite number",
    )


def run(main, doc=None):
    """`absl.app.run(main)` with one-line flag errors (`parse_flags`).

    `--help` then shows ``doc`` (the command's usage) and the flags of ``main``'s
    module (or of the modules in its `flag_modules` attribute), also when the command
    runs through a launcher or a console script (absl shows the `__main__` module's
    docstring and the flags of `sys.argv[0]`).
    """
    if doc is not None:
        sys.modules["__main__"].__doc__ = doc
    for module in getattr(main, "flag_modules", (main.__module__,)):
        for flag in flags.FLAGS.get_key_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
            if flag.parser.flag_type() == "float":
                _require_finite(flag.name)
    app.run(_interruptible(main), flags_parser=parse_flags)


def _interruptible(main):
    """``main`` with Ctrl-C as one line and exit status 130 (128 + SIGINT).

    What is on disk is what a SIGTERM leaves: every artefact is written atomically, so
    the last checkpoint is intact and the same command resumes from it. The process
    ends at once (`os._exit`), without waiting for the input pipeline's threads.
    """

    def guarded(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            print(
                "error: interrupted (Ctrl-C); what was saved is kept: the same command "
                "resumes from the last checkpoint",
                file=sys.stderr,
            )
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)

    return guarded
