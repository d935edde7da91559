"""Converts a trained workdir's checkpoint to ONNX (opset >= 17, dynamic batch).

The command lives in `keras_oltr.commands.to_onnx` (installed as `oltr-export-onnx`);
`--help` describes it.
"""

from keras_oltr.commands.to_onnx import console_main

if __name__ == "__main__":
    console_main()
