"""Converts a trained workdir's checkpoint to ONNX (opset >= 17, dynamic batch).

    python export/onnx.py --workdir=runs/mnist --out=oltr.onnx [--opset=17]

writes oltr.onnx and oltr.onnx.json (class names, threshold, input shape).
"""

import os
import sys

# Run as a script, this file's folder leads sys.path and its name would shadow the
# `onnx` package that tf2onnx imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

from absl import app, flags  # noqa: E402

from keras_oltr import export  # noqa: E402
from keras_oltr.evaluation.evaluate import CheckpointNotFoundError, WorkdirError  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json, stageN/).")
_OUT = flags.DEFINE_string("out", None, "The .onnx file to write.")
_OPSET = flags.DEFINE_integer("opset", 17, "ONNX opset (>= 17).")
_THRESHOLD = flags.DEFINE_float(
    "threshold", None, "Open-set threshold; default: validation-chosen, else 0.1."
)
_STAGE = flags.DEFINE_integer("stage", 2, "1 (plain model) or 2 (OLTR).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
    del argv
    try:
        trained = export.load_workdir_model(
            _WORKDIR.value, stage=_STAGE.value, threshold=_THRESHOLD.value
        )
        path = export.convert_onnx(
            trained.model,
            _OUT.value,
            trained.class_names,
            threshold=trained.threshold,
            threshold_source=trained.threshold_source,
            opset=_OPSET.value,
            source=trained.checkpoint,
        )
    except (WorkdirError, CheckpointNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{path} ({os.path.getsize(path)} bytes)")
    return 0


if __name__ == "__main__":
    app.run(main)
