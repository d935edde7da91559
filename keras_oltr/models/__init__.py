"""Backbones, model builders and the OLTR model class."""

from keras_oltr.models import resnet  # noqa: F401  (registers the backbones)
from keras_oltr.models.backbones import get_backbone, list_backbones, register_backbone
from keras_oltr.models.builders import (
    PLAIN_HEADS,
    build_oltr_model,
    build_plain_model,
    init_from_stage1,
    init_plain_from_stage1,
    with_nearest_neighbour_score,
)
from keras_oltr.models.loading import check_model_matches, load_stage_model
from keras_oltr.models.oltr_model import OLTRModel

__all__ = [
    "PLAIN_HEADS",
    "OLTRModel",
    "build_oltr_model",
    "build_plain_model",
    "check_model_matches",
    "get_backbone",
    "init_from_stage1",
    "init_plain_from_stage1",
    "list_backbones",
    "load_stage_model",
    "register_backbone",
    "with_nearest_neighbour_score",
]
