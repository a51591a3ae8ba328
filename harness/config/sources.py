"""The suite schema of a data source: a file path, or a `datasets` source (a task's
``data``, a few-shot pool's ``data``)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag, TypeAdapter

from harness.config.schema_base import StrictModel


class DatasetSource(StrictModel):
    """Examples from the `datasets` library instead of a local file."""

    dataset: str
    """Name passed to datasets.load_dataset: a hub dataset, a packaged builder (json,
    csv, parquet, ...) or a local folder (relative to the suite file)."""
    split: str = "test"
    """The split to evaluate on."""
    name: str | None = None
    """The dataset configuration (load_dataset's second argument)."""
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    """load_dataset's data_files; local paths (for packaged builders such as json or csv)
    are relative to the suite file."""


def data_tag(value: Any) -> str | None:
    """Which member of a data-source union a raw value is: a path or a datasets mapping."""
    if isinstance(value, str):
        return "file"
    return "datasets" if isinstance(value, dict | DatasetSource) else None


DataSource = Annotated[
    Annotated[str, Tag("file")] | Annotated[DatasetSource, Tag("datasets")],
    Discriminator(
        data_tag,
        custom_error_type="data_source",
        custom_error_message="must be a file path or a mapping {dataset: NAME, split: SPLIT}",
    ),
]


_validate_data = TypeAdapter(DataSource).validate_python
