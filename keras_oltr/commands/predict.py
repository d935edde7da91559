"""Classifies image files with an exported model of any format.

    python export/predict.py --model=serving/oltr images/*.png [--json]

--model is a SavedModel directory (version or TF Serving model directory), a .tflite
or an .onnx file. Prints one line per image: the class or "unknown", then what
decided it: the open score the model was exported with (chosen on validation, e.g.
nearest_neighbour), its value and the threshold (the image is "unknown" when the
score is below the threshold, or its outputs are not finite), then the max softmax
probability and the reachability. `--json` carries the same fields per image
(open_score_name, open_score, threshold, rejected). An unreadable image is reported by name and the
rest are still classified; the exit status is 1 if any image failed, 2 for a bad
flag or a model that cannot be loaded (one line on stderr).

Images get evaluation's test transform (the SavedModel's serve_encoded does the
same), decoded --batch_size files at a time; a file whose header announces more than
--max_pixels pixels is reported as an error without being decoded.

Untrusted input: image files are data (decoded with a pixel budget), but a model is
code: a SavedModel graph can read and write files, so only load models you trust.
"""

import json
import sys

from absl import flags

from keras_oltr import export
from keras_oltr.cli import missing_package, print_error, run

_MODEL = flags.DEFINE_string("model", None, "SavedModel dir, .tflite or .onnx file.")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON document instead of a table.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images decoded and classified per model call.")
_MAX_PIXELS = flags.DEFINE_integer(
    "max_pixels",
    export.MAX_PIXELS,
    "Largest image (height * width, read from the file header) that is decoded.",
)
flags.mark_flag_as_required("model")


def main(argv):
    paths = argv[1:]
    if not paths:
        return print_error("Give at least one image file.")
    for flag in (_BATCH, _MAX_PIXELS):
        if flag.value < 1:
            print(f"error: --{flag.name} must be positive. Received: {flag.value}", file=sys.stderr)
            return 2
    try:
        predictor = export.load_predictor(_MODEL.value)
    except export.ModelFileError as error:  # names the file at fault, model or metadata
        return print_error(error)
    except (OSError, ValueError) as error:
        message = " ".join(str(error).split())  # one line, whatever the runtime said
        return print_error(f"cannot load model {_MODEL.value}: {message}")
    except ImportError as error:  # onnxruntime / ai-edge-litert: the `deploy` extra
        return print_error(missing_package(error))
    results = export.predict_files(
        predictor, paths, batch_size=_BATCH.value, max_pixels=_MAX_PIXELS.value
    )
    failed = [r for r in results if r.error]
    if _JSON.value:
        document = {
            "model": predictor.path,
            "format": predictor.format,
            "open_score": predictor.metadata.open_score,
            "threshold": predictor.metadata.threshold,
            "results": [r.to_dict() for r in results],
        }
        print(json.dumps(document, indent=2))
    else:
        for r in results:
            if r.error:
                print(f"{r.path}\tERROR\t{r.error}")
            else:
                comparison = "<" if r.rejected else ">="
                print(
                    f"{r.path}\t{r.class_name}\t{r.open_score_name}={r.open_score:.4g} "
                    f"{comparison} threshold {r.threshold:.4g}\t"
                    f"probability={r.probability:.4f}\treachability={r.reachability:.4f}"
                )
    for r in failed:
        print(f"error: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def console_main():
    """The `oltr-predict` console script (and `python export/predict.py`)."""
    run(main, doc=__doc__)


if __name__ == "__main__":
    console_main()
