"""Tests of the typed evaluation results: to_dict / from_dict and old metrics.json files."""

import copy
import dataclasses
import json

import numpy as np
import pytest

from keras_oltr.evaluation import metrics as M
from keras_oltr.evaluation import metrics_file as F
from keras_oltr.evaluation import report as R
from keras_oltr.evaluation import tables as T
from keras_oltr.evaluation.metrics_file import MetricsDocument
from keras_oltr.evaluation.open_score_results import OpenScoreEntry
from keras_oltr.evaluation.results import EvaluationResult, GroupCounts
from keras_oltr.shot_groups import SHOT_GROUPS

TRAIN_COUNTS = np.array([300, 150, 60, 30, 10, 5])


def random_result(seed=0, *, with_val=True):
    """A result of random predictions with reachability, an extra score and a val split."""
    rng = np.random.default_rng(seed)
    k = TRAIN_COUNTS.size

    def split(n):
        labels = rng.integers(-1, k, n)
        logits = rng.normal(size=(n, k)) * 2
        return labels, logits, np.log(np.exp(logits).sum(1))

    labels, logits, energy = split(200)
    val_labels, val_logits, val_energy = split(100)
    val = {"labels": val_labels, "logits": val_logits, "open_scores": {"energy": val_energy}}
    return M.evaluate_predictions(
        logits,
        labels,
        TRAIN_COUNTS,
        from_logits=True,
        reachability=rng.random(200),
        open_scores={"energy": energy},
        val=val if with_val else None,
    )


def v1_metrics():
    """metrics.json's "metrics" as written before the typed results, written out by hand."""
    groups = {"many": 1, "medium": 0, "few": 1}
    at_threshold = {
        "f_measure": 0.5,
        "precision": 0.5,
        "recall": 0.5,
        "overall": 0.5,
        "open_rejection_rate": 0.5,
    }
    ranking = {
        "auroc": 0.75,
        "aupr": 0.5,
        "fpr_at_95_tpr": 0.5,
        "threshold_at_95_tpr": 0.3,
        "tpr_level": 0.95,
        "num_known": 2,
        "num_open": 2,
    }
    return {
        "conventions": {
            "shot_groups": "strict",
            "shot_group_bounds": {"many": "> 100", "medium": "20..100", "few": "< 20"},
            "open_threshold": 0.1,
            "rejection": "r",
            "open_f": "f",
            "closed_f": "c",
            "group_accuracy": "g",
            "threshold_free": "t",
            "fpr_at_95_tpr": "p",
            "ece": "e",
            "undefined_values": "u",
        },
        "counts": {
            "num_classes": 2,
            "num_known_test": 2,
            "num_open_test": 2,
            "classes_per_group": groups,
            "test_images_per_group": groups,
        },
        "closed": {
            "convention": "strict",
            "overall": 0.5,
            "many": 1.0,
            "medium": None,
            "few": 0.0,
            "macro_f1": 0.5,
        },
        "open": {
            "threshold": 0.1,
            "convention": "strict",
            "overall": 0.5,
            "many": 1.0,
            "medium": None,
            "few": 0.0,
            "open_rejection_rate": 0.5,
            "known_rejection_rate": 0.0,
            "precision": 0.5,
            "recall": 0.5,
            "f_measure": 0.5,
            "tp": 1,
            "fp": 1,
            "fn": 1,
        },
        "open_assignment": {"accepted": groups, "rejected": 1, "argmax": groups, "num_open": 2},
        "threshold_free": {"msp": ranking, "reachability": None},
        "open_scores": {
            "scores": {
                "msp": {
                    "description": "max softmax probability",
                    "score_params": {},
                    **ranking,
                    "val_threshold": 0.2,
                    "val_open_f": 0.6,
                    "test_at_val_threshold": at_threshold,
                    "val_auroc": None,
                },
                "energy": {
                    "description": "energy",
                    "score_params": {},
                    **ranking,
                    "val_threshold": None,
                    "val_open_f": None,
                    "test_at_val_threshold": None,
                },
            },
            "scale_grid": {
                "1": {
                    "auroc": 0.7,
                    "aupr": 0.4,
                    "fpr_at_95_tpr": 0.5,
                    "val_open_f": None,
                    "val_threshold": None,
                }
            },
            "chosen": "msp",
        },
        "calibration": {
            "ece": 0.25,
            "mce": 0.5,
            "num_bins": 2,
            "bin_edges": [0.0, 0.5, 1.0],
            "bin_count": [0, 2],
            "bin_accuracy": [None, 0.5],
            "bin_confidence": [None, 0.75],
        },
        "threshold_selection": {
            "score": "msp",
            "score_params": {},
            "score_description": "max softmax probability",
            "threshold": 0.2,
            "val_open_f": 0.6,
            "val_precision": 0.6,
            "val_recall": 0.6,
            "used_open_val": True,
            "open_val_note": "chosen on known val + open val images",
            "num_val_known": 3,
            "num_val_open": 1,
            "test": {
                "f_measure": 0.5,
                "precision": 0.5,
                "recall": 0.5,
                "overall": 0.5,
                "many": 1.0,
                "medium": None,
                "few": 0.0,
                "open_rejection_rate": 0.5,
            },
        },
        "curves": {
            name: [0.0, 0.5, 1.0]
            for name in (
                "thresholds",
                "precision",
                "recall",
                "f_measure",
                "overall",
                "open_rejection_rate",
                *SHOT_GROUPS,
            )
        },
        "histograms": {
            "msp": {"edges": [0.0, 0.5, 1.0], "known": [0, 2], "open": [1, 1]},
            "reachability": None,
        },
        "per_class": {
            "train_count": [200, 5],
            "test_count": [1, 1],
            "group": ["many", "few"],
            "closed_accuracy": [1.0, 0.0],
            "open_accuracy": [1.0, 0.0],
        },
    }


def v1_document(metrics):
    return {
        "schema_version": 1,
        "model_name": "oltr",
        "dataset_name": "fake",
        "created": "2024-01-01T00:00:00+00:00",
        "versions": {"python": "3.11.0"},
        "metrics": metrics,
        "extra": {"seed": 0},
    }


@pytest.mark.parametrize("with_val", [True, False])
def test_round_trip_of_a_computed_result(with_val):
    result = random_result(with_val=with_val)
    assert isinstance(result, EvaluationResult)
    assert EvaluationResult.from_dict(result.to_dict()) == result
    through_json = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert EvaluationResult.from_dict(through_json) == result
    assert (result.threshold_selection is not None) == with_val
    assert dataclasses.replace(result, closed=dataclasses.replace(result.closed, few=0.5)) != result


def test_to_dict_keeps_the_written_keys_and_their_order():
    data = random_result().to_dict()
    assert list(data) == [
        "conventions",
        "counts",
        "closed",
        "open",
        "open_assignment",
        "threshold_free",
        "open_scores",
        "calibration",
        "threshold_selection",
        "curves",
        "histograms",
        "per_class",
        "deployed",  # new keys come last; absent while None (older files)
    ]
    assert list(data["open"])[:3] == ["threshold", "convention", "overall"]
    entry = data["open_scores"]["scores"]["energy"]
    assert list(entry)[-4:] == [
        "val_threshold",
        "val_open_f",
        "test_at_val_threshold",
        "val_auroc",
    ]
    assert isinstance(data["per_class"]["train_count"], list)
    assert isinstance(data["calibration"]["bin_edges"][0], float)


def test_group_fields_follow_shot_groups():
    assert tuple(f.name for f in dataclasses.fields(GroupCounts)) == SHOT_GROUPS


def test_nan_is_written_as_null():
    result = random_result()
    nan_closed = dataclasses.replace(result.closed, overall=float("nan"))
    assert nan_closed.to_dict()["overall"] is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: d["open"].update(f_measure="x"),
            "metrics.open.f_measure: expected a number, got 'x'",
        ),
        (lambda d: d["calibration"].pop("ece"), "metrics.calibration.ece: missing"),
        (lambda d: d.pop("per_class"), "metrics.per_class: missing"),
        (lambda d: d["open"].update(tp=True), "metrics.open.tp: expected an integer, got True"),
        (
            lambda d: d["per_class"]["group"].__setitem__(1, 3),
            "metrics.per_class.group[1]: expected a string, got 3",
        ),
        (
            lambda d: d["open_scores"]["scores"]["energy"].update(auroc=[0.5]),
            "metrics.open_scores.scores.energy.auroc: expected a number, got [0.5]",
        ),
        (
            lambda d: d["threshold_selection"]["test"].pop("many"),
            "metrics.threshold_selection.test.many: missing",
        ),
        (
            lambda d: d.update(threshold_free=[]),
            "metrics.threshold_free: expected an object, got []",
        ),
    ],
)
def test_from_dict_names_the_bad_key_path(edit, message):
    data = copy.deepcopy(random_result().to_dict())
    edit(data)
    with pytest.raises(ValueError) as info:
        EvaluationResult.from_dict(data)
    assert str(info.value) == message


def test_unknown_keys_are_ignored():
    result = random_result()
    data = result.to_dict()
    data["new_metric"] = 1
    data["open"]["new_rate"] = 0.5
    assert EvaluationResult.from_dict(data) == result


def test_a_metrics_json_of_the_old_writer_loads_and_is_written_back_unchanged(tmp_path):
    document = v1_document(v1_metrics())
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(document, indent=1))
    loaded = F.load_metrics_json(str(path))
    assert loaded.model_name == "oltr" and loaded.extra == {"seed": 0}
    metrics = loaded.metrics
    assert metrics.closed.medium is None and metrics.open.tp == 1
    assert metrics.open_scores.scores["msp"].test_at_val_threshold.f_measure == 0.5
    assert metrics.threshold_selection.test.many == 1.0
    assert json.dumps(loaded.to_dict(), indent=1) == path.read_text()
    row = T.results_row(metrics, loaded.model_name)
    assert row["open_f_val_rule"] == 0.5 and row["auroc_val_score"] == 0.75


def test_keys_older_files_lack_are_optional(tmp_path):
    metrics = v1_metrics()
    del metrics["open_scores"]
    for key in ("score", "score_params", "score_description", "open_val_note"):
        del metrics["threshold_selection"][key]
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(v1_document(metrics)))
    loaded = F.load_metrics_json(str(path))
    assert loaded.metrics.open_scores is None
    assert loaded.metrics.threshold_selection.score is None
    assert loaded.to_dict()["metrics"] == metrics  # still absent, not null
    assert T.results_row(loaded.metrics)["auroc_val_score"] is None
    out = tmp_path / "report"
    R.write_report(loaded.metrics, str(out), model_name="oltr", dataset_name="fake")
    assert "| val-chosen" in (out / "report.md").read_text()


def test_an_older_score_row_without_val_auroc_loads():
    row = v1_metrics()["open_scores"]["scores"]["msp"]
    del row["val_auroc"]
    entry = OpenScoreEntry.from_dict(row)
    assert entry.val_auroc is None and entry.val_threshold == 0.2


def test_load_metrics_json_names_the_file_and_the_envelope_key(tmp_path):
    document = v1_document(v1_metrics())
    del document["created"]
    document["metrics"]["counts"]["num_classes"] = 2.0
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError) as info:
        F.load_metrics_json(str(path))
    message = str(info.value)
    assert message.startswith(str(path))
    assert "created: missing" in message
    assert "metrics.counts.num_classes: expected an integer, got 2.0" in message
    with pytest.raises(ValueError, match="document: expected an object"):
        MetricsDocument.from_dict([])
