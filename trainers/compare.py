"""Compares evaluation runs: one table of mean ± std grouped by model name.

The command lives in `keras_oltr.commands.compare` (installed as `oltr-compare`);
`--help` describes it.
"""

from keras_oltr.commands.compare import console_main

if __name__ == "__main__":
    console_main()
