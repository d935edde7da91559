"""Per-epoch validation: closed-set accuracy, per shot group, and reachability."""

import keras
import numpy as np

from keras_oltr.inference import eval_batches, inference_function, num_batches
from keras_oltr.shot_groups import group_accuracies, per_class_accuracy, shot_groups

VALIDATION_SPLITS = ("val", "open_val")


def validate(model, dataset, batch_size, predict_fn=None, *, verbose=0):
    """Closed-set validation accuracy (overall and per shot group) and reachability.

    Returns a dict: "val_accuracy", "val_many" / "val_medium" / "val_few", and the
    [N] reachability of the known ("reachability_known") and open
    ("reachability_open") validation images, None for a model without it.
    """
    predict_fn = predict_fn or inference_function(model)
    out = {}
    for split in VALIDATION_SPLITS:
        if not dataset.has_split(split):
            continue
        preds, labels, reach = [], [], []
        progbar = keras.utils.Progbar(
            num_batches(dataset, split, batch_size), verbose=verbose, unit_name="batch"
        )
        for step, (images, batch_labels) in enumerate(eval_batches(dataset, split, batch_size)):
            outputs = predict_fn(images)
            preds.append(np.argmax(outputs["logits"], axis=-1))
            labels.append(batch_labels.numpy())
            if "reachability" in outputs:
                reach.append(outputs["reachability"])
            progbar.update(step + 1)
        out[split] = (
            np.concatenate(preds),
            np.concatenate(labels),
            np.concatenate(reach) if reach else None,
        )
    predicted, labels, reach = out["val"]
    accuracy, _ = per_class_accuracy(predicted, labels, dataset.num_classes)
    groups = group_accuracies(accuracy, shot_groups(dataset.train_counts))
    result = {"val_accuracy": float(np.mean(predicted == labels))}
    result.update({f"val_{k}": float(v) for k, v in groups.items()})
    result["reachability_known"] = reach
    result["reachability_open"] = out["open_val"][2] if "open_val" in out else None
    return result
