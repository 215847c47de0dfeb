"""OME-NGFF 0.5 group documents (``zarr.json`` of every group) built from a Layout.

Backends never write NGFF metadata of their own: they place the documents built here,
keyed by their path below the root (``""`` is the root group).
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream.layout import stage_coordinate
from ome_stream.settings.dimensions import effective_type

if TYPE_CHECKING:
    from ome_stream.layout import AcquisitionRecord, ArraySpec, Layout
    from ome_stream.settings import Dimension

__all__ = [
    "NGFF_VERSION",
    "RESERVED_ATTRIBUTES",
    "group_attributes",
    "group_documents",
    "image_attributes",
]

NGFF_VERSION = "0.5"
#: Names ome-stream owns in group attributes; global metadata namespaces may not use them.
RESERVED_ATTRIBUTES = frozenset({"ome", "ome_stream", "ome_writers"})
#: Colour of a channel given without one (ome-writers' default, OME's default too).
DEFAULT_COLOR = "FFFFFF"
try:
    WRITER_VERSION = version("ome-stream")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    WRITER_VERSION = "unknown"


def _group(attributes: dict[str, Any]) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _axis(dim: Dimension) -> dict[str, Any]:
    axis: dict[str, Any] = {"name": dim.name}
    # an untyped axis with a standard name gets that name's type (as yaozarrs does)
    kind = effective_type(dim)
    if kind is not None and kind != "other":
        axis["type"] = kind
    if dim.unit is not None and kind in ("space", "time"):
        axis["unit"] = dim.unit
    return axis


def _transformations(
    dims: tuple[Dimension, ...], level: int = 0, binned: frozenset[int] = frozenset()
) -> list[dict[str, Any]]:
    factor = float(1 << level)
    transforms: list[dict[str, Any]] = [
        {
            "type": "scale",
            "scale": [
                (float(d.scale) if d.scale else 1.0) * (factor if axis in binned else 1.0)
                for axis, d in enumerate(dims)
            ],
        }
    ]
    if any(d.translation for d in dims):
        transforms.append(
            {"type": "translation", "translation": [float(d.translation or 0) for d in dims]}
        )
    return transforms


def _omero(array: ArraySpec, layout: Layout | None) -> dict[str, Any] | None:
    channel_dim = next((d for d in array.dims if effective_type(d) == "channel"), None)
    if channel_dim is None or channel_dim.count is None:
        return None
    channels = channel_dim.channels or []
    if layout is not None:
        low, high = layout.contrast.value_range()
        windows = layout.contrast.windows()
    elif np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        low, high, windows = float(info.min), float(info.max), {}
    else:
        low, high, windows = 0.0, 1.0, {}
    entries = []
    for index in range(channel_dim.count):
        channel = channels[index] if index < len(channels) else None
        start, end = windows.get(index, (low, high))
        entries.append(
            {
                "label": channel.name if channel else f"Channel {index}",
                "color": (channel.color_hex if channel else None) or DEFAULT_COLOR,
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"start": start, "end": end, "min": low, "max": high},
            }
        )
    return {"channels": entries, "rdefs": {"model": "color"}}


def _stage_position(array: ArraySpec) -> dict[str, Any]:
    position = array.position
    entry: dict[str, Any] = {"name": position.name}
    for key in ("plate_row", "plate_column", "grid_row", "grid_column"):
        if (value := getattr(position, key)) is not None:
            entry[key] = value
    coordinates = {axis: stage_coordinate(position, axis) for axis in "xyz"}
    entry.update({k: v for k, v in coordinates.items() if v is not None})
    if any(v is not None for v in coordinates.values()):
        x_dim = array.dims[-1]
        entry["unit"] = (
            x_dim.unit if effective_type(x_dim) == "space" and x_dim.unit else "micrometer"
        )
    return entry


def image_attributes(
    array: ArraySpec,
    frame_metadata: list[dict[str, Any]] | None = None,
    levels: int = 1,
    binned_axes: frozenset[int] = frozenset(),
    layout: Layout | None = None,
) -> dict[str, Any]:
    """The attributes of one image group: multiscales, omero, frame metadata, position.

    ``levels`` datasets are listed (paths "0", "1", ...); level ``l`` scales the
    ``binned_axes`` by ``2**l``. With ``layout``, the omero windows come from the pixels
    sampled so far (:class:`~ome_stream.metadata.contrast.ContrastSampler`).
    """
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": _transformations(array.dims, level, binned_axes),
        }
        for level in range(levels)
    ]
    ome: dict[str, Any] = {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": array.position.name,
                "axes": [_axis(d) for d in array.dims],
                "datasets": datasets,
            }
        ],
    }
    if (omero := _omero(array, layout)) is not None:
        ome["omero"] = omero
    return {
        "ome": ome,
        "ome_writers": {"version": WRITER_VERSION, "frame_metadata": list(frame_metadata or [])},
        "ome_stream": {
            "dimension_names": list(array.dim_names),
            "position": _stage_position(array),
        },
    }


def group_documents(
    layout: Layout, record: AcquisitionRecord | None = None
) -> dict[str, dict[str, Any]]:
    """Every group's ``zarr.json`` document, keyed by group path ('' for the root).

    Without a record (at open), the documents describe the empty dataset; with one, they
    carry the frame metadata, the global metadata (in the root group: the image itself
    for one position, the bioformats2raw or plate root otherwise) and the documents given
    to ``update_metadata``, which replace an image's attributes except its frame metadata
    (always the frames recorded) and the global namespaces (set later, they win).
    """
    docs: dict[str, dict[str, Any]] = {}
    binned = frozenset(
        axis for axis, factor in enumerate(layout.arrays[-1].scale_factors) if factor > 1
    )
    for index, array in enumerate(layout.images):
        frames = record.frame_metadata[index] if record else None
        docs[array.image_path] = _group(
            image_attributes(array, frames, layout.levels, binned, layout)
        )
    settings = layout.settings
    if layout.is_plate:
        assert settings.plate is not None
        wells = layout.wells()
        rows, columns = settings.plate.row_names, settings.plate.column_names
        plate: dict[str, Any] = {
            "version": NGFF_VERSION,
            "rows": [{"name": r} for r in rows],
            "columns": [{"name": c} for c in columns],
            "wells": [
                {
                    "path": f"{row}/{column}",
                    "rowIndex": rows.index(row),
                    "columnIndex": columns.index(column),
                }
                for row, column in wells
            ],
            "field_count": max(len(f) for f in wells.values()),
        }
        if settings.plate.name:
            plate["name"] = settings.plate.name
        docs[""] = _group({"ome": {"version": NGFF_VERSION, "plate": plate}})
        for row in dict.fromkeys(row for row, _ in wells):
            docs[row] = _group({})
        for (row, column), fields in wells.items():
            images = [{"path": a.image_path.rsplit("/", 1)[1]} for a in fields]
            docs[f"{row}/{column}"] = _group(
                {"ome": {"version": NGFF_VERSION, "well": {"images": images}}}
            )
    elif layout.multi_position:
        docs[""] = _group({"ome": {"version": NGFF_VERSION, "bioformats2raw.layout": 3}})
        docs["OME"] = _group(
            {"ome": {"version": NGFF_VERSION, "series": [a.image_path for a in layout.images]}}
        )
    if record is not None:
        for index, array in enumerate(layout.images):
            override = record.overrides.get(array.image_path)
            if override is not None:
                attributes = json.loads(json.dumps(override))
                writer = attributes.setdefault("ome_writers", {"version": WRITER_VERSION})
                writer["frame_metadata"] = list(record.frame_metadata[index])
                docs[array.image_path]["attributes"] = attributes
        docs[""]["attributes"].update(record.global_metadata)
    return docs


def group_attributes(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{image key: attributes}`` of the image groups, as ``get_metadata`` shows them.

    The keys are those of ome-writers: '.' for a single image (the root), the series
    name (``Pos0``) for a position, ``<row>/<column>/<field>`` for a plate field.
    """
    return {
        path or ".": doc["attributes"]
        for path, doc in docs.items()
        if "multiscales" in doc["attributes"].get("ome", {}) or "ome_writers" in doc["attributes"]
    }
