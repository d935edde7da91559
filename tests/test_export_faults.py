"""Model files received from others or left by a failure: one clear error, never a crash.

A SavedModel copied without (part of) its variables, a damaged or foreign metadata
file, a damaged .tflite / .onnx / .keras, a workdir whose model is not its config's,
an empty batch in every runtime, and the staging folder a killed export leaves: each
ends in the project's own error naming the file at fault (exit status 2 with one line
from every command that loads a model), an empty result, or a clean-up by the next
export. One small exported model serves the whole module.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_oltr.models as models
from keras_oltr import export
from keras_oltr.data import get_dataset
from keras_oltr.export import cli as export_cli
from keras_oltr.export import graph, staging
from keras_oltr.run_evaluation import evaluate_workdir
from keras_oltr.runs import CheckpointDamagedError, ConfigMismatchError, WorkdirError

H, W, C = 28, 28, 1
CLASS_NAMES = ["zero", "one", "two"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ("saved_model", "tflite", "onnx")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return models.build_plain_model(len(CLASS_NAMES), (H, W, C), backbone_options={"width": 8})


@pytest.fixture(scope="module")
def artifacts(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "saved_model": export.export_saved_model(
            model, str(root / "serving"), CLASS_NAMES, warmup=False
        ),
        "tflite": export.convert_tflite(model, str(root / "m.tflite"), CLASS_NAMES),
        "onnx": export.convert_onnx(model, str(root / "m.onnx"), CLASS_NAMES),
    }


def _copy(artifacts, kind, tmp_path):
    """A copy of the artifact and its metadata; returns (model path, metadata path)."""
    source = artifacts[kind]
    if kind == "saved_model":
        path = str(tmp_path / "oltr" / "1")
        shutil.copytree(source, path)
    else:
        path = str(tmp_path / os.path.basename(source))
        shutil.copy(source, path)
        shutil.copy(source + ".json", path + ".json")
    return path, export.metadata_path(path)


def _truncate(path, keep=0.5):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def _flip(path):
    data = bytearray(open(path, "rb").read())
    for i in np.random.default_rng(0).integers(0, len(data), 20):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _empty(path):
    open(path, "wb").close()


def _garbage(path):
    size = os.path.getsize(path)
    open(path, "wb").write(np.random.default_rng(1).integers(0, 256, size, np.uint8).tobytes())


def _one_line(error):
    message = str(error)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# ------------------------------------------------------------ damaged model files

VARIABLES = os.path.join("variables", "variables.data-00000-of-00001")
INDEX = os.path.join("variables", "variables.index")

# (case, format, the file damaged (inside a SavedModel), damage, the message names
# that file (else the model))
DAMAGED = [
    ("variables missing", "saved_model", VARIABLES, os.remove, True),
    ("variables index missing", "saved_model", INDEX, os.remove, True),
    ("variables truncated", "saved_model", VARIABLES, _truncate, False),
    ("variables flipped bytes", "saved_model", VARIABLES, _flip, False),
    ("graph missing", "saved_model", "saved_model.pb", os.remove, True),
    ("graph truncated", "saved_model", "saved_model.pb", _truncate, False),
    ("tflite truncated", "tflite", "", _truncate, False),
    ("tflite random bytes", "tflite", "", _garbage, False),
    ("tflite empty", "tflite", "", _empty, False),
    ("onnx truncated", "onnx", "", _truncate, False),
    ("onnx random bytes", "onnx", "", _garbage, False),
    ("onnx empty", "onnx", "", _empty, False),
]


@pytest.mark.parametrize(
    "case, kind, inside, damage, names_file", DAMAGED, ids=[c[0] for c in DAMAGED]
)
def test_a_damaged_model_is_one_error_naming_it(
    case, kind, inside, damage, names_file, artifacts, tmp_path
):
    path, _ = _copy(artifacts, kind, tmp_path)
    damaged = os.path.join(path, inside) if inside else path
    damage(damaged)
    with pytest.raises(export.ModelFileError) as caught:
        export.load_predictor(path)
    assert (damaged if names_file else path) in _one_line(caught.value), caught.value


# --------------------------------------------------------- damaged or foreign metadata


def _edit_metadata(edit):
    def damage(metadata_file):
        document = json.loads(open(metadata_file).read())
        edit(document)
        open(metadata_file, "w").write(json.dumps(document))

    return damage


# (case, damage(metadata path), words of the message besides the metadata path)
BAD_METADATA = [
    ("missing", os.remove, "Missing"),
    ("not JSON", lambda p: open(p, "w").write('{"format": "onn'), "damaged"),
    ("not UTF-8", lambda p: open(p, "wb").write(b"\xff\xfe{}"), "damaged"),
    ("a list", lambda p: open(p, "w").write("[1, 2]"), "not a JSON object"),
    ("no class names", _edit_metadata(lambda d: d.pop("class_names")), "no class_names field"),
    ("class names a string", _edit_metadata(lambda d: d.update(class_names="abc")), "class_names"),
    ("NaN threshold", _edit_metadata(lambda d: d.update(threshold=float("nan"))), "threshold"),
    ("no logits", _edit_metadata(lambda d: d["outputs"].remove("logits")), "lacks logits"),
    ("bad image shape", _edit_metadata(lambda d: d.update(image_shape=[28, 28])), "image_shape"),
    ("other classes", _edit_metadata(lambda d: d.update(class_names=["a", "b"])), "3 classes"),
    ("other input", _edit_metadata(lambda d: d.update(image_shape=[32, 32, 1])), "32, 32, 1"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case, damage, words", BAD_METADATA, ids=[c[0] for c in BAD_METADATA])
def test_bad_metadata_is_one_error_naming_the_metadata_file(
    case, damage, words, kind, artifacts, tmp_path
):
    path, metadata_file = _copy(artifacts, kind, tmp_path)
    damage(metadata_file)
    with pytest.raises(export.ModelFileError) as caught:
        export.load_predictor(path)
    message = _one_line(caught.value)
    assert metadata_file in message and words in message, message
    assert "Cannot load" not in message  # the model itself is not blamed


def test_metadata_of_another_format_is_refused(artifacts, tmp_path):
    path, metadata_file = _copy(artifacts, "onnx", tmp_path)
    shutil.copy(artifacts["tflite"] + ".json", metadata_file)
    with pytest.raises(export.ModelFileError, match="describes a tflite model"):
        export.load_predictor(path)


# ------------------------------------------------------------------- empty batches


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_batch_gives_empty_outputs_in_every_runtime(kind, artifacts):
    predictor = export.load_predictor(artifacts[kind])
    outputs = predictor.predict(np.zeros((0, H, W, C), np.float32))
    assert outputs["logits"].shape == outputs["probabilities"].shape == (0, len(CLASS_NAMES))
    for name in ("reachability", "max_probability", "open_score", "predicted_class"):
        assert outputs[name].shape == (0,), name
    assert outputs["predicted_class"].dtype == np.int64 and outputs["class_name"] == []
    assert predictor.predict(np.zeros((2, H, W, C), np.float32))["logits"].shape == (2, 3)
    assert export.predict_files(predictor, []) == []


def test_saved_model_signatures_take_an_empty_batch(artifacts):
    signatures = tf.saved_model.load(artifacts["saved_model"]).signatures
    for outputs in (
        signatures["serving_default"](images=tf.zeros((0, H, W, C))),
        signatures["serve_encoded"](encoded_images=tf.constant([], tf.string)),
    ):
        assert outputs["logits"].shape == (0, len(CLASS_NAMES))
        assert outputs["predicted_class"].shape == outputs["class_name"].shape == (0,)


# ------------------------------------------------------- a workdir's model and files


@pytest.fixture(scope="module")
def mnist_classes():
    return list(get_dataset("mixed_mnist_lt").class_names)


def _workdir(root, model, class_names, **config):
    (root / "stage1").mkdir(parents=True)
    model.save(root / "stage1" / "best.keras")
    document = {"dataset": "mixed_mnist_lt", **config}
    if class_names is not None:
        document.update(class_names=list(class_names), image_size=H, channels=C)
    (root / "config.json").write_text(json.dumps(document))
    return root


def _run_export_cli(workdir, capsys, **kwargs):
    """What every export CLI does with its workdir flags (`cli.load_from_flags`)."""
    code = export_cli.run(lambda: export.load_workdir_model(str(workdir), stage=1, **kwargs) and 0)
    errors = capsys.readouterr().err.strip().splitlines()
    return code, errors


def test_a_model_of_another_run_is_refused_naming_config_json(model, tmp_path, capsys):
    workdir = _workdir(tmp_path / "run", model, ["a", "b", "c", "d"])
    with pytest.raises(ConfigMismatchError) as caught:
        export.load_workdir_model(str(workdir), stage=1)
    message = _one_line(caught.value)
    for words in ("best.keras has 3 classes", "config.json records 4 classes", "another run"):
        assert words in message, message
    code, errors = _run_export_cli(workdir, capsys)
    assert code == 2 and len(errors) == 1 and "config.json records 4" in errors[0], errors

    other = _workdir(tmp_path / "other", model, CLASS_NAMES)
    document = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**document, "image_size": 32}))
    with pytest.raises(ConfigMismatchError, match="images of 28x28x1, but .* images of 32x32x1"):
        export.load_workdir_model(str(other), stage=1)


def test_evaluation_refuses_a_model_of_another_dataset(model, tmp_path):
    # An older config.json without the dataset facts: the dataset itself is compared.
    workdir = _workdir(tmp_path / "run", model, None)
    with pytest.raises(ConfigMismatchError) as caught:
        evaluate_workdir(str(workdir), stage=1, out_dir=str(tmp_path / "eval"))
    message = _one_line(caught.value)
    assert "has 3 classes" in message and "'mixed_mnist_lt'" in message, message
    with pytest.raises(ConfigMismatchError, match="dataset 'mixed_mnist_lt'"):
        export.load_workdir_model(str(workdir), stage=1)  # the class names come from it too


def test_damaged_keras_and_metrics_files_are_named(mnist_classes, tmp_path, capsys):
    keras.utils.set_random_seed(0)
    fitting = models.build_plain_model(len(mnist_classes), (H, W, C), backbone_options={"width": 8})
    workdir = _workdir(tmp_path / "run", fitting, mnist_classes)
    assert export.load_workdir_model(str(workdir), stage=1).threshold_source == "default"
    metrics = workdir / "eval" / "stage1" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_text('{"metrics": {"threshold_selection": {"thresh')
    code, errors = _run_export_cli(workdir, capsys)
    assert code == 2 and len(errors) == 1 and str(metrics) in errors[0], errors
    assert "--threshold" in errors[0]
    # An explicit threshold does not need it.
    assert export.load_workdir_model(str(workdir), stage=1, threshold=0.3).threshold == 0.3

    best = workdir / "stage1" / "best.keras"
    best.write_bytes(best.read_bytes()[:200])
    with pytest.raises(CheckpointDamagedError, match="best.keras is damaged"):
        export.load_workdir_model(str(workdir), stage=1, threshold=0.3)
    code, errors = _run_export_cli(workdir, capsys, threshold=0.3)
    assert code == 2 and len(errors) == 1 and "best.keras is damaged" in errors[0], errors
    with pytest.raises(WorkdirError, match="best.keras is damaged"):
        evaluate_workdir(str(workdir), stage=1, out_dir=str(tmp_path / "eval"))


# ----------------------------------------------- the commands: exit 2 with one line


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")


def _errors_of(script, *args):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, *script.split("/")), *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
        timeout=300,
    )
    # TensorFlow's C++ runtime logs a few lines at start-up whatever the log level.
    noise = ("WARNING: All log messages before absl", "I0000", "W0000", "E0000")
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith(noise)]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.returncode, lines


def _no_variables(artifacts, tmp_path, mnist_classes, model):
    path, _ = _copy(artifacts, "saved_model", tmp_path)
    os.remove(os.path.join(path, VARIABLES))
    return "export/predict.py", [f"--model={path}", str(tmp_path / "x.png")], VARIABLES


def _bad_sidecar(artifacts, tmp_path, mnist_classes, model):
    path, metadata_file = _copy(artifacts, "tflite", tmp_path)
    open(metadata_file, "w").write("{")
    return "export/predict.py", [f"--model={path}", str(tmp_path / "x.png")], metadata_file


def _foreign_model(artifacts, tmp_path, mnist_classes, model):
    workdir = _workdir(tmp_path / "run", model, mnist_classes)
    return (
        "trainers/evaluate.py",
        [f"--workdir={workdir}", "--stage=1"],
        f"but {workdir / 'config.json'} records {len(mnist_classes)} classes",
    )


def _damaged_metrics(artifacts, tmp_path, mnist_classes, model):
    workdir = _workdir(tmp_path / "run", model, CLASS_NAMES)
    metrics = workdir / "eval" / "stage1" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    metrics.write_bytes(b"\x00" * 10)
    return (
        "export/to_tflite.py",
        [f"--workdir={workdir}", "--stage=1", f"--out={tmp_path}"],
        str(metrics),
    )


CLI_CASES = [_no_variables, _bad_sidecar, _foreign_model, _damaged_metrics]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.__name__.strip("_") for c in CLI_CASES])
def test_commands_that_load_models_exit_2_with_one_line(
    case, artifacts, tmp_path, mnist_classes, model
):
    script, args, named = case(artifacts, tmp_path, mnist_classes, model)
    code, lines = _errors_of(script, *args)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert named in lines[0], lines


# ------------------------------------------------- staging folders of killed exports

_EXPORT = textwrap.dedent(
    """
    import sys
    import keras_oltr.models as models
    from keras_oltr import export
    model = models.build_plain_model(3, (28, 28, 1), backbone_options={"width": 8})
    export.export_saved_model(model, sys.argv[1], ["a", "b", "c"], warmup=False)
    """
)


def _dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _staging_name(pid, host=None):
    return f"{staging.STAGING_PREFIX}{pid}-0123abcd@{host or socket.gethostname()}"


def test_a_killed_export_is_cleaned_by_the_next_one(model, tmp_path):
    serving = tmp_path / "serving"
    env = dict(_env(), KERAS_OLTR_FAULT="export")  # SIGKILL just before the rename
    killed = subprocess.run(
        [sys.executable, "-c", _EXPORT, str(serving)], env=env, cwd=REPO, timeout=300
    )
    assert killed.returncode == -9
    model_dir = serving / "oltr"
    (leftover,) = os.listdir(model_dir)
    assert (
        leftover.startswith(staging.STAGING_PREFIX) and (model_dir / leftover / "export").is_dir()
    )
    # A live export's staging folder (this process) and another host's stay.
    live, foreign = _staging_name(os.getpid()), _staging_name(_dead_pid(), "other-host")
    (model_dir / live).mkdir()
    (model_dir / foreign).mkdir()

    version_dir = export.export_saved_model(model, str(serving), CLASS_NAMES, warmup=False)
    assert sorted(os.listdir(model_dir)) == sorted(["1", live, foreign])
    assert export.load_predictor(version_dir).class_names == tuple(CLASS_NAMES)


def test_file_exports_clean_staging_of_dead_processes(model, tmp_path):
    dead, live = _staging_name(_dead_pid()), _staging_name(os.getpid())
    for name in (dead, live):
        (tmp_path / name).mkdir()
        (tmp_path / name / "numeric").mkdir()  # as a killed conversion leaves it
    metadata = graph.export_metadata(model, "onnx", CLASS_NAMES, threshold=0.2)
    graph.write_file_artifact(str(tmp_path / "m.onnx"), b"model", metadata)
    assert sorted(os.listdir(tmp_path)) == sorted([live, "m.onnx", "m.onnx.json"])
    assert staging.stale_staging(tmp_path) == []
    assert staging.process_alive(os.getpid()) and not staging.process_alive(_dead_pid())
