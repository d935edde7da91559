"""Converts a trained workdir's checkpoint to ONNX (opset >= 17, dynamic batch).

    python export/to_onnx.py --workdir=runs/mnist --out=oltr.onnx [--opset=17]

writes oltr.onnx and oltr.onnx.json (class names, open score and threshold, input
shape). A user error ends with one line on stderr and exit status 2.
"""

import os

from absl import flags

from keras_oltr import export
from keras_oltr.cli import run
from keras_oltr.export import cli

_FLAGS = cli.define_workdir_flags()
_OUT = flags.DEFINE_string("out", None, "The .onnx file to write.")
_OPSET = flags.DEFINE_integer("opset", 17, "ONNX opset (>= 17).")
flags.mark_flag_as_required("out")


def _convert():
    trained = cli.load_from_flags(_FLAGS)
    path = export.convert_onnx(
        trained.model,
        _OUT.value,
        trained.class_names,
        opset=_OPSET.value,
        **trained.decision_kwargs(),
    )
    print(f"{path} ({os.path.getsize(path)} bytes)")


def console_main():
    """The `oltr-export-onnx` console script (and `python export/to_onnx.py`)."""
    run(cli.main_of(_convert), doc=__doc__)


if __name__ == "__main__":
    console_main()
