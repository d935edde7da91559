"""Converts a trained workdir's checkpoint to TFLite, in one or more precisions.

The command lives in `keras_oltr.commands.to_tflite` (installed as `oltr-export-tflite`);
`--help` describes it.
"""

from keras_oltr.commands.to_tflite import console_main

if __name__ == "__main__":
    console_main()
