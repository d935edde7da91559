"""The experiment config: dotted overrides from the command line, validation, presets."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from keras_oltr.config import ExperimentConfig, StageConfig, leaf_fields, with_overrides
from keras_oltr.presets import get_preset, smoke
from keras_oltr.runs import Workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, "trainers", "train.py")


def test_leaf_fields_walk_the_nested_dataclasses():
    fields = leaf_fields()
    assert fields["stage2.epochs"] is int
    assert fields["model.feature_dim"] is int
    assert fields["stage1.learning_rate"] is float
    assert fields["mixed_precision"] is bool
    assert "dataset_kwargs" not in fields and "stage2" not in fields
    # Every StageConfig field is reachable under both stages.
    for field in dataclasses.fields(StageConfig):
        assert f"stage1.{field.name}" in fields and f"stage2.{field.name}" in fields


def test_with_overrides_sets_nested_and_top_level_fields():
    config = get_preset("mixed_mnist_lt")
    new = with_overrides(
        config, {"stage2.epochs": 60, "stage2.tau": 1.0, "model.width": 8, "seed": 3}
    )
    assert (new.stage2.epochs, new.stage2.tau, new.model.width, new.seed) == (60, 1.0, 8, 3)
    assert new.stage1 == config.stage1 and new.name == config.name
    assert config.stage2.epochs == 8  # the preset itself is frozen and unchanged


def test_with_overrides_validates_with_the_field_name():
    with pytest.raises(ValueError, match=r"`stage2.momentum` must be in \[0, 1\)"):
        with_overrides(get_preset("mixed_mnist_lt"), {"stage2.momentum": 1.5})


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("bank_per_class", 0, r"`bank_per_class` must be a positive integer"),
        ("bank_max_total", -1, r"`bank_max_total` must be an integer >= 0"),
        ("bank_dtype", "int8", r"`bank_dtype` must be in \('float32', 'float16'\)"),
    ],
)
def test_bank_fields_are_validated(field, value, match):
    config = get_preset("mixed_mnist_lt")
    assert (config.bank_per_class, config.bank_max_total, config.bank_dtype) == (
        100,
        0,
        "float32",
    )
    with pytest.raises(ValueError, match=match):
        with_overrides(config, {field: value})


def test_a_config_json_from_before_the_bank_fields_still_resumes(tmp_path):
    config = smoke(get_preset("mixed_mnist_lt"))
    workdir = Workdir(str(tmp_path))
    workdir.write_config(config)
    with open(workdir.config_path) as f:
        document = json.load(f)
    for key in ("bank_per_class", "bank_max_total", "bank_dtype"):
        del document[key]
    with open(workdir.config_path, "w") as f:
        json.dump(document, f)
    workdir.write_config(config)  # the defaults are what such a run did: no mismatch
    assert ExperimentConfig.from_workdir(str(tmp_path)) == config


def test_config_round_trips_through_json():
    config = smoke(get_preset("imagenet_lt"))
    assert ExperimentConfig.from_dict(json.loads(config.to_json())) == config


@pytest.mark.slow
def test_train_cli_sets_any_field_by_dotted_name_and_aliases():
    args = [
        "--print_config",
        "--config.stage2.epochs=60",
        "--config.model.feature_dim=256",
        "--config.model.backbone_weights=none",
        "--tau=1",
        "--stage1_lr=0.05",
    ]
    result = subprocess.run(
        [sys.executable, TRAIN, *args], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads(result.stdout)
    assert config["stage2"]["epochs"] == 60 and config["model"]["feature_dim"] == 256
    assert config["model"]["backbone_weights"] is None
    assert config["stage1"]["tau"] == config["stage2"]["tau"] == 1.0
    assert config["stage1"]["learning_rate"] == 0.05
    assert config["stage1"]["epochs"] == 12  # untouched fields keep the preset's value
