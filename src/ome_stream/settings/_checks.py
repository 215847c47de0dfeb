"""The rules that span several fields of AcquisitionSettings, and backend resolution.

Each check raises ValueError naming the field and the value at fault. They run after every
construction and assignment; the ones that need dimensions are skipped until those are set.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import TYPE_CHECKING, Any

from ome_stream.backends.registry import (
    BACKENDS,
    BackendInfo,
    available_backends,
    first_available_backend,
)
from ome_stream.settings._base import check_path_name
from ome_stream.settings.dimensions import effective_type

if TYPE_CHECKING:
    from ome_stream.settings.acquisition import AcquisitionSettings
    from ome_stream.settings.dimensions import Dimension
    from ome_stream.settings.positions import Plate, Position

__all__ = [
    "check_backend",
    "check_positions",
    "check_root",
    "check_storage_order",
    "format_from_root",
    "resolve_backend",
    "storage_sorted",
]

_STORAGE_KEYS = frozenset({"endpoint", "region", "timeout"})
# NGFF 0.5 "plate" and "well" metadata: row names, column names and field (image) paths
# MUST contain only alphanumeric characters (its schemas: ^[A-Za-z0-9]+$).
_NGFF_PLATE_NAME = re.compile(r"[A-Za-z0-9]+")
_NGFF_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9]")
_LISTED = 5  # problems named in one error message


def format_from_root(root: str, suffix: str) -> Any:
    """The format for ``format="auto"``: from the suffix, scratch without a root path."""
    if root == "":
        return {"name": "scratch"}
    if suffix.lower().endswith((".tiff", ".tif")):
        return {"name": "ome-tiff", "suffix": suffix}
    if suffix.lower().endswith(".zarr"):
        return {"name": "ome-zarr", "suffix": suffix}
    names = available_backends("ome-zarr") or available_backends()
    backend = names[0] if names else "tensorstore"
    fmt = BACKENDS[backend].format
    warnings.warn(
        f"\n\nOutput format could not be inferred from root_path {root!r}. \n"
        f"Picking the first available format/backend: {fmt!r}/{backend!r}. \n"
        "This may not be what you want, and may be an error in future versions.\n"
        "Please specify the desired format explicitly (e.g. format='ome-zarr')\n"
        "or via the extension of `root_path`.",
        UserWarning,
        stacklevel=5,
    )
    return {"name": fmt, "backend": backend}


def check_root(settings: AcquisitionSettings) -> None:
    """The root path's scheme and ``storage_options`` (s3:// only)."""
    root = settings.root_path
    if "://" in root and not root.startswith("s3://"):
        raise ValueError(f"root_path {root!r}: only local paths and s3:// URLs are supported")
    if settings.storage_options is not None:
        if not root.startswith("s3://"):
            raise ValueError("storage_options apply only to s3:// roots")
        if unknown := sorted(set(settings.storage_options) - _STORAGE_KEYS):
            raise ValueError(
                f"storage_options: unknown keys {unknown}; use 'endpoint', 'region' and "
                "'timeout' (credentials come from the AWS environment variables)"
            )
        timeout = settings.storage_options.get("timeout", "30")
        try:
            seconds = float(timeout)
        except ValueError:
            seconds = math.nan
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(
                f"storage_options: timeout must be a positive number of seconds, got {timeout!r}"
            )


def storage_sorted(
    dims: tuple[Dimension, ...], order: str | list[str], file_format: str
) -> tuple[Dimension, ...]:
    """``dims`` (non-frame array dimensions) in the storage order ``order`` asks for."""
    if isinstance(order, list):
        by_name = {d.name: d for d in dims}
        return tuple(by_name[name] for name in order if name in by_name)
    if order == "acquisition" or file_format == "scratch":
        return dims
    if file_format == "ome-tiff":
        # OME-TIFF's DimensionOrder can describe any T/C/Z order: keep it, others last.
        return tuple(sorted(dims, key=lambda d: 0 if d.name.lower() in ("t", "c", "z") else 1))
    rank = {"time": 0, "channel": 1, "space": 2}
    space = {"z": 0, "y": 1, "x": 2}

    def key(dim: Dimension) -> tuple[int, int]:
        kind = effective_type(dim) or ""
        return rank.get(kind, 3), space.get(dim.name, -1) if kind == "space" else 0

    return tuple(sorted(dims, key=key))


def check_storage_order(settings: AcquisitionSettings) -> None:
    """An explicit order names every dimension once, the frame last; unbounded stays first."""
    order = settings.storage_order
    dims = settings.dimensions
    names = [d.name for d in dims]
    if isinstance(order, list):
        if order[-2:] != names[-2:]:
            raise ValueError(
                f"storage_order may not (yet) permute the last two dimensions: {order!r} "
                f"must end with the frame dimensions {names[-2:]}"
            )
        if sorted(order) != sorted(names):
            raise ValueError(
                f"storage_order names {order!r} don't match acquisition dimension names "
                f"{names} (each must appear exactly once)"
            )
    if settings.is_unbounded and settings.index_dimensions:
        first = dims[0]
        stored = settings.storage_index_dimensions
        if first.type != "position" and stored[0].name != first.name:
            raise ValueError(
                f"storage_order {order!r} stores the dimensions as {[d.name for d in stored]}, "
                f"but the unbounded dimension {first.name!r} must stay first; use "
                "storage_order='acquisition' or an order that starts with it"
            )


def check_positions(settings: AcquisitionSettings) -> None:
    """Position names are path-safe; a plate needs wells (OME-Zarr: with NGFF 0.5 names)."""
    positions = settings.positions if settings.position_dimension is not None else ()
    for pos in positions:
        check_path_name(pos.name, "Position name")
        for part in (pos.plate_row, pos.plate_column):
            if part is not None:
                check_path_name(part, "Plate row/column name")
    plate = settings.plate
    if plate is None:
        return
    if settings.position_dimension is None:
        raise ValueError("Plate mode requires a position dimension in dimensions.")
    if missing := [p.name for p in positions if p.plate_row is None]:
        raise ValueError(
            "All positions must have row and column for plate mode. Missing row/column for "
            f"positions: {missing}"
        )
    outside = [
        f"{p.name} ({p.plate_row}, {p.plate_column})"
        for p in positions
        if p.plate_row not in plate.row_names or p.plate_column not in plate.column_names
    ]
    if outside:
        raise ValueError(
            f"Some positions have row/column values not in the plate definition: {outside}; "
            f"the plate has rows {plate.row_names} and columns {plate.column_names}. Their "
            "images would be stored outside every well the plate describes."
        )
    if settings.format.name == "ome-zarr":
        _check_ngff_plate(plate, positions)


def _listed(problems: list[str]) -> str:
    more = len(problems) - _LISTED
    return "; ".join(problems[:_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _check_ngff_plate(plate: Plate, positions: tuple[Position, ...]) -> None:
    """An OME-Zarr plate's row, column and field names are NGFF 0.5 names, its fields unique.

    Each field is stored at ``<row>/<column>/<position name>``. NGFF 0.5 allows only ASCII
    letters and digits in those names, and two positions of one well with the same name
    (in different grid cells) would share one image group.
    """
    bad = [
        (f"plate {kind} name {name!r}", name)
        for kind, names in (("row", plate.row_names), ("column", plate.column_names))
        for name in names
        if not _NGFF_PLATE_NAME.fullmatch(name)
    ]
    bad += [
        (
            f"position {index} (well {pos.plate_row}/{pos.plate_column}) has field name "
            f"{pos.name!r}",
            pos.name,
        )
        for index, pos in enumerate(positions)
        if not _NGFF_PLATE_NAME.fullmatch(pos.name)
    ]
    if bad:
        fixed = _NGFF_NOT_ALLOWED.sub("", bad[0][1])
        example = f" (e.g. {bad[0][1]!r} to {fixed!r})" if fixed else ""
        raise ValueError(
            "OME-Zarr plate names (NGFF 0.5 plate and well metadata) may contain only the "
            f"letters A-Z, a-z and the digits 0-9: {_listed([p for p, _ in bad])}. Rename "
            f"them{example}, or write OME-TIFF, which stores such names."
        )
    first: dict[str, int] = {}
    shared = []
    for index, pos in enumerate(positions):
        path = f"{pos.plate_row}/{pos.plate_column}/{pos.name}"
        if path in first:
            shared.append(f"positions {first[path]} and {index} are both {path!r}")
        first.setdefault(path, index)
    if shared:
        raise ValueError(
            "An OME-Zarr plate stores each field at <row>/<column>/<position name>, so the "
            "positions of one well need different names, whatever their grid cells: "
            f"{_listed(shared)}."
        )


def backend_problems(settings: AcquisitionSettings, info: BackendInfo) -> list[str]:
    """Why ``info``'s backend cannot write ``settings`` (empty when it can)."""
    problems = []
    fmt = settings.format.name
    codec = settings.compression or "none"
    if fmt != "scratch" and codec not in info.compressions:
        problems.append(
            f"compression {codec!r} is not supported by the {info.name!r} backend ({fmt}); "
            f"choose one of {list(info.compressions)}"
        )
    if settings.is_unbounded and not info.supports_unbounded:
        problems.append(f"the {info.name!r} backend cannot write an unbounded first dimension")
    if settings.pyramid is not None and not info.supports_pyramids:
        problems.append(
            f"pyramid: the {info.name!r} backend ({fmt}) cannot write multiscale levels; "
            "use an OME-Zarr backend such as 'tensorstore'"
        )
    if settings.root_path.startswith("s3://") and not info.supports_object_storage:
        problems.append(
            f"root_path {settings.root_path!r}: the {info.name!r} backend ({fmt}) cannot "
            "write to object storage; use OME-Zarr with 'tensorstore' or 'zarr-python'"
        )
    if settings.storage_index_permutation is not None and not info.supports_storage_order:
        able = [b.name for b in BACKENDS.values() if b.format == fmt and b.supports_storage_order]
        problems.append(
            f"storage_order {settings.storage_order!r} stores "
            f"{[d.name for d in settings.storage_index_dimensions]} but the acquisition order "
            f"is {[d.name for d in settings.index_dimensions]}; the {info.name!r} backend only "
            "appends frames in acquisition order. Use storage_order='acquisition' or a "
            f"backend that can reorder: {', '.join(able)}"
        )
    return problems


def _candidates(settings: AcquisitionSettings) -> list[BackendInfo]:
    requested = settings.format.backend
    if requested != "auto":
        return [BACKENDS[requested]]
    return [BACKENDS[name] for name in available_backends(settings.format.name)]


def check_backend(settings: AcquisitionSettings) -> None:
    """The chosen backend (or, for 'auto', some installed one) can write the settings."""
    pyramid = settings.pyramid
    downsample_z = pyramid is not None and pyramid.downsample_z
    if downsample_z and not any(d.name == "z" for d in settings.index_dimensions):
        raise ValueError("pyramid: downsample_z needs a non-frame dimension named 'z'")
    problems = [backend_problems(settings, info) for info in _candidates(settings)]
    if problems and all(problems):
        raise ValueError(problems[0][0])


def resolve_backend(settings: AcquisitionSettings) -> str:
    """``format.backend``, or for 'auto' the first installed backend able to write it."""
    requested = settings.format.backend
    if requested != "auto":
        return requested
    if not settings.dimensions:
        return first_available_backend(settings.format.name)
    for info in _candidates(settings):
        if not backend_problems(settings, info):
            return info.name
    return first_available_backend(settings.format.name)
