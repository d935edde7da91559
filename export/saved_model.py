"""Exports a trained workdir's checkpoint as a SavedModel in the TF Serving layout.

    python export/saved_model.py --workdir=runs/mnist --out=serving [--threshold=0.2] \
        [--stage=2] [--version=1] [--model_name=oltr]

writes serving/oltr/1/ with the serving_default (float32 images in [0, 255]) and
serve_encoded (JPEG/PNG strings) signatures. The threshold defaults to the one the
evaluation chose on validation data (<workdir>/eval/stage2/metrics.json), else 0.1.
"""

import sys

from absl import app, flags

from keras_oltr import export
from keras_oltr.evaluation.evaluate import CheckpointNotFoundError, WorkdirError

_WORKDIR = flags.DEFINE_string("workdir", None, "Training workdir (config.json, stageN/).")
_OUT = flags.DEFINE_string("out", None, "Model server base directory.")
_THRESHOLD = flags.DEFINE_float(
    "threshold", None, "Open-set threshold; default: validation-chosen, else 0.1."
)
_STAGE = flags.DEFINE_integer("stage", 2, "1 (plain model) or 2 (OLTR).")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
_VERSION = flags.DEFINE_integer("version", 1, "TF Serving version directory.")
_MODEL_NAME = flags.DEFINE_string("model_name", "oltr", "TF Serving model name.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
_WARMUP = flags.DEFINE_bool("warmup", True, "Write TF Serving warmup requests.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
    del argv
    try:
        path, trained = export.export_workdir_saved_model(
            _WORKDIR.value,
            _OUT.value,
            stage=_STAGE.value,
            checkpoint=_CHECKPOINT.value,
            threshold=_THRESHOLD.value,
            model_name=_MODEL_NAME.value,
            version=_VERSION.value,
            warmup=_WARMUP.value,
            overwrite=_OVERWRITE.value,
        )
    except (WorkdirError, CheckpointNotFoundError, ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{path} (threshold {trained.threshold:g}, {trained.threshold_source})")
    return 0


if __name__ == "__main__":
    app.run(main)
