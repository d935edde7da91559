"""Evaluates a trained OLTR run: metrics.json, report.md and plots.

The command lives in `keras_oltr.commands.evaluate` (installed as `oltr-evaluate`);
`--help` describes it.
"""

from keras_oltr.commands.evaluate import console_main

if __name__ == "__main__":
    console_main()
