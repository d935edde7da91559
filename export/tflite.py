"""Converts a trained workdir's checkpoint to TFLite, in one or more precisions.

    python export/tflite.py --workdir=runs/mnist --out=tflite \
        --quantization=float32,float16,dynamic_int8,int8

writes tflite/oltr_<quantization>.tflite, each with <file>.json beside it (class
names, threshold, input shape). Full-integer int8 is calibrated on training images.
"""

import os
import sys

from absl import app, flags

from keras_oltr import export
from keras_oltr.evaluation.evaluate import CheckpointNotFoundError, WorkdirError

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json, stageN/).")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_QUANTIZATION = flags.DEFINE_multi_enum(
    "quantization", ["float32"], list(export.QUANTIZATIONS), "Precisions to write."
)
_THRESHOLD = flags.DEFINE_float(
    "threshold", None, "Open-set threshold; default: validation-chosen, else 0.1."
)
_STAGE = flags.DEFINE_integer("stage", 2, "1 (plain model) or 2 (OLTR).")
_CALIBRATION = flags.DEFINE_integer("num_calibration", 256, "Training images for int8.")
_NAME = flags.DEFINE_string("name", "oltr", "File name prefix.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
    del argv
    try:
        trained = export.load_workdir_model(
            _WORKDIR.value, stage=_STAGE.value, threshold=_THRESHOLD.value
        )
        calibration = None
        if "int8" in _QUANTIZATION.value:
            calibration = export.representative_images(
                export.get_workdir_dataset(trained.config), _CALIBRATION.value
            )
        for quantization in dict.fromkeys(_QUANTIZATION.value):
            path = os.path.join(_OUT.value, f"{_NAME.value}_{quantization}.tflite")
            export.convert_tflite(
                trained.model,
                path,
                trained.class_names,
                quantization=quantization,
                threshold=trained.threshold,
                threshold_source=trained.threshold_source,
                representative_images=calibration,
                source=trained.checkpoint,
            )
            print(f"{path} ({os.path.getsize(path)} bytes)")
    except (WorkdirError, CheckpointNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
