"""Loading a run's saved models (`stage{N}/{best,latest}.keras`) with the custom layers."""

import keras

# The builders import every keras_oltr layer and model class, which registers them.
from keras_oltr.models import builders  # noqa: F401
from keras_oltr.runs import CheckpointDamagedError, ConfigMismatchError, Workdir


def load_stage_model(workdir, stage: int, checkpoint: str = "best"):
    """Loads `stage{N}/{checkpoint}.keras` of a run (not compiled).

    Raises:
        CheckpointNotFoundError: the file is missing (the message says why).
        CheckpointDamagedError: the file exists but cannot be read.
    """
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    path = workdir.require_model(stage, checkpoint)
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # (zip, h5 and JSON errors alike)
        raise CheckpointDamagedError(
            f"{path} is damaged ({type(error).__name__}: {str(error)[:200]}). Rerun "
            f"--stage={stage} with the same flags to write it again."
        ) from None
    if workdir.has_config():
        facts = workdir.dataset_info()
        image_shape = None
        if "image_size" in facts and "channels" in facts:
            image_shape = (facts["image_size"], facts["image_size"], facts["channels"])
        check_model_matches(
            model,
            path,
            class_names=facts.get("class_names"),
            image_shape=image_shape,
            recorded_in=workdir.config_path,
        )
    return model


def check_model_matches(model, path, *, class_names=None, image_shape=None, recorded_in):
    """Raises ConfigMismatchError when ``model`` is not the model that ``recorded_in`` describes.

    Compares the number of classes of its logits with ``class_names`` and its input
    with ``image_shape`` (H, W, C); None skips a check. A model copied from another
    run (another dataset, image size or class list) is refused here, before it is
    evaluated, exported or trained on with the wrong class names.
    """
    outputs = model.output if isinstance(model.output, dict) else {}
    found, expected = [], []
    if class_names is not None and "logits" in outputs:
        num_classes = outputs["logits"].shape[-1]
        if num_classes != len(class_names):
            found.append(f"{num_classes} classes")
            expected.append(f"{len(class_names)} classes")
    if image_shape is not None and len(model.inputs) == 1:
        shape = tuple(model.inputs[0].shape[1:])
        if shape != tuple(image_shape):
            found.append("images of " + "x".join(map(str, shape)))
            expected.append("images of " + "x".join(map(str, image_shape)))
    if found:
        raise ConfigMismatchError(
            f"{path} has {' and '.join(found)}, but {recorded_in} records "
            f"{' and '.join(expected)}: the model belongs to another run or dataset."
        )
