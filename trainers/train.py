"""Trains OLTR end to end: stage 1, stage 2, evaluation and export.

The command lives in `keras_oltr.commands.train` (installed as `oltr-train`);
`--help` describes it.
"""

from keras_oltr.commands.train import console_main

if __name__ == "__main__":
    console_main()
