"""Preparing the output location: the overwrite rules, applied before anything is written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ome_stream.settings import AcquisitionSettings

__all__ = ["is_object_url", "prepare_target"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_object_url(path: str) -> bool:
    """Whether ``path`` names object storage (``s3://...``) rather than a local path."""
    return "://" in path


def _is_tiff(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) in _TIFF_MAGIC
    except OSError:
        return False


def _is_dataset(path: Path, file_format: str) -> bool:
    """Whether ``path`` is something ome-stream may replace: a dataset or an empty dir."""
    if path.is_symlink():
        return False
    if path.is_dir():
        entries = list(path.iterdir())
        if not entries:
            return True
        if file_format == "ome-zarr":
            return (path / "zarr.json").is_file() or (path / ".zgroup").is_file()
        return all(
            e.is_file() and e.name.lower().endswith((".tif", ".tiff")) and _is_tiff(e)
            for e in entries
        )
    return file_format == "ome-tiff" and path.is_file() and _is_tiff(path)


def prepare_target(settings: AcquisitionSettings) -> None:
    """Check the output path against ``overwrite`` and make room for the new dataset.

    Raises
    ------
    FileExistsError
        The output path exists and ``overwrite`` is False, or it exists and is not a
        dataset ome-stream may replace (a non-empty directory that is not a dataset, a
        file that is not a TIFF): ``overwrite`` never deletes anything else.

    """
    if settings.file_format == "scratch":
        return  # the scratch backend applies its own rules (memory, or its own directory)
    target = settings.output_path
    if is_object_url(target):
        from ome_stream.backends.tensorstore import prepare_object_target

        prepare_object_target(target, settings.overwrite, settings.storage_options)
        return
    path = Path(target)
    if path.exists() or path.is_symlink():
        if not settings.overwrite:
            raise FileExistsError(f"{target!r} already exists; pass overwrite=True to replace it")
        if not _is_dataset(path, settings.file_format):
            raise FileExistsError(
                f"{target!r} exists and is not an {settings.file_format} dataset or an empty "
                "directory; refusing to delete it even with overwrite=True"
            )
        if path.is_dir():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    path.parent.mkdir(parents=True, exist_ok=True)
