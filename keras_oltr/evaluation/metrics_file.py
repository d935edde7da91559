"""The metrics.json file: `MetricsDocument`, its writing, validation and reading.

The document is `MetricsDocument` in JSON::

    {"schema_version": 1, "model_name": str, "dataset_name": str, "created": ISO date,
     "versions": {package: version}, "metrics": <EvaluationResult.to_dict()>,
     "extra": dict or null}

`validate_metrics_json` checks a parsed document by reading it into the dataclasses
(`MetricsDocument.from_dict`); their field types are the schema.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from keras_oltr import __version__
from keras_oltr.evaluation.records import Record, record
from keras_oltr.evaluation.results import EvaluationResult
from keras_oltr.runs.workdir import METRICS_FILE

__all__ = [
    "SCHEMA_VERSION",
    "MetricsDocument",
    "load_metrics_json",
    "package_versions",
    "validate_metrics_json",
    "write_metrics_json",
]

SCHEMA_VERSION = 1


@record
class MetricsDocument(Record):
    """The metrics.json document: an `EvaluationResult` and what produced it.

    Attributes:
        schema_version: format version of the document (`SCHEMA_VERSION`).
        model_name: e.g. "plain" or "oltr"; runs of one name are averaged together.
        dataset_name: e.g. "imagenet_lt".
        created: ISO 8601 time of writing (UTC).
        versions: {package: version} of Python and the packages used.
        metrics: the results.
        extra: further JSON information (config, checkpoint, image counts) or None.
    """

    schema_version: int
    model_name: str
    dataset_name: str
    created: str
    versions: dict[str, str]
    metrics: EvaluationResult
    extra: dict[str, Any] | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = ""):
        """As `Record.from_dict`; errors name paths from the document root."""
        return super().from_dict(data, path)


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages that produced the numbers."""
    versions = {"python": platform.python_version()}
    for package in ("keras", "tensorflow", "numpy", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    versions["keras_oltr"] = __version__
    return versions


def validate_metrics_json(document: Mapping[str, Any]) -> None:
    """Checks a parsed metrics.json document (required keys and types; extra keys allowed).

    Raises:
        ValueError: one line per missing key or wrongly typed value, named by its
            key path (e.g. "metrics.open.f_measure: missing").
    """
    MetricsDocument.from_dict(document)


def write_metrics_json(
    metrics: EvaluationResult,
    out_dir: str,
    *,
    model_name: str,
    dataset_name: str,
    extra: Mapping[str, Any] | None = None,
) -> MetricsDocument:
    """Writes ``out_dir/metrics.json`` (folder created if needed); returns the document.

    Args:
        metrics: the result of `evaluate_predictions`.
        out_dir: the folder.
        model_name: e.g. "plain" or "oltr"; `trainers/compare.py` groups by it.
        dataset_name: e.g. "imagenet_lt".
        extra: optional JSON-serialisable information (config, checkpoint, seed).
    """
    document = MetricsDocument(
        schema_version=SCHEMA_VERSION,
        model_name=model_name,
        dataset_name=dataset_name,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=package_versions(),
        metrics=metrics,
        extra=extra,
    )
    data = document.to_dict()
    validate_metrics_json(data)  # what is written must load back
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, METRICS_FILE), "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    return document


def load_metrics_json(path: str) -> MetricsDocument:
    """Reads a metrics.json file (also those of older versions, schema_version 1).

    Raises:
        ValueError: naming ``path`` and every missing key or wrongly typed value.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    try:
        return MetricsDocument.from_dict(data)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
