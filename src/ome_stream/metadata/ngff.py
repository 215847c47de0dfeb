"""OME-NGFF 0.5 group documents (``zarr.json`` of every group) built from a Layout.

Backends never write NGFF metadata of their own: they place the documents built here,
keyed by their path below the root (``""`` is the root group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream.settings.dimensions import effective_type

if TYPE_CHECKING:
    from ome_stream.layout import AcquisitionRecord, ArraySpec, Layout
    from ome_stream.settings import Dimension

__all__ = ["NGFF_VERSION", "RESERVED_ATTRIBUTES", "group_documents"]

NGFF_VERSION = "0.5"
#: Names ome-stream owns in group attributes; global metadata namespaces may not use them.
RESERVED_ATTRIBUTES = frozenset({"ome", "ome_stream", "ome_writers"})
_DEFAULT_COLORS = ("00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00", "FFFFFF")


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


def _omero(array: ArraySpec) -> dict[str, Any] | None:
    channel_dim = next((d for d in array.dims if effective_type(d) == "channel"), None)
    if channel_dim is None or channel_dim.count is None:
        return None
    channels = channel_dim.channels or []
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        low, high = float(info.min), float(info.max)
    else:
        low, high = 0.0, 1.0
    entries = []
    for index in range(channel_dim.count):
        channel = channels[index] if index < len(channels) else None
        entries.append(
            {
                "label": channel.name if channel else f"Channel {index}",
                "color": (channel.color_hex if channel and channel.color else None)
                or _DEFAULT_COLORS[index % len(_DEFAULT_COLORS)],
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"start": low, "end": high, "min": low, "max": high},
            }
        )
    return {"channels": entries, "rdefs": {"model": "color"}}


def image_attributes(
    array: ArraySpec,
    frame_metadata: list[dict[str, Any]] | None = None,
    global_metadata: dict[str, Any] | None = None,
    levels: int = 1,
    binned_axes: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    """The attributes of one image group: multiscales, omero, and frame metadata.

    ``levels`` datasets are listed (paths "0", "1", ...); level ``l`` scales the
    ``binned_axes`` by ``2**l``.
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
    if (omero := _omero(array)) is not None:
        ome["omero"] = omero
    attributes: dict[str, Any] = {"ome": ome}
    extra: dict[str, Any] = {"dimension_names": list(array.dim_names)}
    if frame_metadata:
        extra["frame_metadata"] = frame_metadata
    attributes["ome_stream"] = extra
    if global_metadata:
        attributes.update(global_metadata)
    return attributes


def group_documents(
    layout: Layout, record: AcquisitionRecord | None = None
) -> dict[str, dict[str, Any]]:
    """Every group's ``zarr.json`` document, keyed by group path ('' for the root).

    Without a record (at open), the documents describe the empty dataset; with one (at
    close), they carry the frame metadata and global metadata.
    """
    docs: dict[str, dict[str, Any]] = {}
    global_metadata = record.global_metadata if record else {}
    binned = frozenset(
        axis for axis, factor in enumerate(layout.arrays[-1].scale_factors) if factor > 1
    )
    for index, array in enumerate(layout.images):
        frames = record.frame_metadata[index] if record else None
        docs[array.image_path] = _group(
            image_attributes(
                array,
                frames,
                global_metadata if not array.image_path else None,
                layout.levels,
                binned,
            )
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
        docs[""] = _group({"ome": {"version": NGFF_VERSION, "plate": plate}, **global_metadata})
        for row in dict.fromkeys(row for row, _ in wells):
            docs[row] = _group({})
        for (row, column), fields in wells.items():
            images = [{"path": a.image_path.rsplit("/", 1)[1]} for a in fields]
            docs[f"{row}/{column}"] = _group(
                {"ome": {"version": NGFF_VERSION, "well": {"images": images}}}
            )
    elif layout.multi_position:
        docs[""] = _group(
            {"ome": {"version": NGFF_VERSION, "bioformats2raw.layout": 3}, **global_metadata}
        )
        docs["OME"] = _group(
            {"ome": {"version": NGFF_VERSION, "series": [a.image_path for a in layout.images]}}
        )
    if record is not None:
        for path, attributes in record.overrides.items():
            docs[path]["attributes"] = attributes
    return docs


def group_attributes(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{group path: attributes}`` as ``get_metadata`` shows it ('.' is the root)."""
    return {path or ".": doc["attributes"] for path, doc in docs.items()}
