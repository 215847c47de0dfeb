"""OME-XML for OME-TIFF, built with ome-types from the Layout and the frame metadata.

Each file gets a document of its own that is valid alone: its image (one per position),
its planes and TiffData, its channels, and — for plates — the plate with the one well
sample that references its image.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from ome_types import model as ome

from ome_stream.settings.dimensions import effective_type

if TYPE_CHECKING:
    from ome_stream.layout import ArraySpec, Layout
    from ome_stream.settings import Dimension

__all__ = ["FRAME_NAMESPACE", "build_ome", "ome_letters"]

FRAME_NAMESPACE = "ome-stream.org/frame-metadata"

_PIXEL_TYPES = {
    "int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8", "uint16": "uint16",
    "uint32": "uint32", "float32": "float", "float64": "double", "bool": "bit",
}  # fmt: skip
_LENGTH_UNITS = {
    "angstrom": "Å", "nanometer": "nm", "micrometer": "µm", "millimeter": "mm",
    "centimeter": "cm", "meter": "m", "picometer": "pm", "kilometer": "km",
}  # fmt: skip
_TIME_UNITS = {
    "second": "s", "millisecond": "ms", "microsecond": "µs", "nanosecond": "ns",
    "minute": "min", "hour": "h",
}  # fmt: skip
# frame metadata keys with a home in <Plane>; the rest become a MapAnnotation
_PLANE_KEYS = {"delta_t", "exposure_time", "position_x", "position_y", "position_z"}


def ome_letters(dims: tuple[Dimension, ...]) -> list[str]:
    """The OME letter (T, C or Z) of each non-frame dimension, in the given order.

    Time maps to T, channel to C, space to Z (an untyped t, c or z by its name);
    dimensions of another type take the letters left over, in the order T, C, Z.
    """
    letters: list[str | None] = []
    for dim in dims:
        letter = {"time": "T", "channel": "C", "space": "Z"}.get(effective_type(dim) or "")
        letters.append(letter if letter not in letters else None)
    spare = [x for x in "TCZ" if x not in letters]
    resolved = []
    for letter, dim in zip(letters, dims, strict=True):
        if letter is None:
            if not spare:
                raise ValueError(
                    f"dimension {dim.name!r} has no OME-TIFF axis left (T, C and Z are taken)"
                )
            letter = spare.pop(0)
        resolved.append(letter)
    return resolved


def _length(dim: Dimension | None) -> dict[str, Any]:
    if dim is None or dim.scale is None:
        return {}
    unit = _LENGTH_UNITS.get(dim.unit or "micrometer")
    return {"value": float(dim.scale), **({"unit": unit} if unit else {})}


def build_ome(
    layout: Layout,
    array: ArraySpec,
    shape: tuple[int, ...],
    frame_metadata: list[dict[str, Any]],
    global_metadata: dict[str, Any],
) -> ome.OME:
    """The OME document of the file holding ``array`` with final storage ``shape``."""
    index_dims = array.dims[:-2]
    letters = ome_letters(index_dims)
    sizes = {"T": 1, "C": 1, "Z": 1}
    for letter, size in zip(letters, shape[:-2], strict=True):
        sizes[letter] = size
    # DimensionOrder lists axes fastest first: X, Y, then storage order reversed.
    order = "XY" + "".join(reversed(letters))
    order += "".join(x for x in "ZCT" if x not in order)
    by_letter = dict(zip(letters, index_dims, strict=True))
    y_dim, x_dim = array.dims[-2:]
    image_index = array.position_index
    pixels_id = f"Pixels:{image_index}"

    pixels_kwargs: dict[str, Any] = {}
    for axis, dim in (("x", x_dim), ("y", y_dim), ("z", by_letter.get("Z"))):
        length = _length(dim)
        if length:
            pixels_kwargs[f"physical_size_{axis}"] = length["value"]
            if "unit" in length:
                pixels_kwargs[f"physical_size_{axis}_unit"] = length["unit"]
    t_dim = by_letter.get("T")
    if t_dim is not None and t_dim.scale is not None:
        pixels_kwargs["time_increment"] = float(t_dim.scale)
        unit = _TIME_UNITS.get(t_dim.unit or "second")
        if unit:
            pixels_kwargs["time_increment_unit"] = unit

    c_dim = by_letter.get("C")
    channel_info = (c_dim.channels if c_dim is not None else None) or []
    channels = []
    for c in range(sizes["C"]):
        info = channel_info[c] if c < len(channel_info) else None
        kwargs: dict[str, Any] = {"id": f"Channel:{image_index}:{c}", "samples_per_pixel": 1}
        if info is not None:
            kwargs["name"] = info.name
            if info.color:
                kwargs["color"] = ome.Color(f"#{info.color_hex}")
        channels.append(ome.Channel(**kwargs))

    annotations: list[ome.MapAnnotation] = []
    records = {tuple(r["index"][d.name] for d in index_dims): r for r in frame_metadata}
    planes, tiff_data = [], []
    for ifd, index in enumerate(np.ndindex(*shape[:-2])):
        at = dict(zip(letters, index, strict=True))
        plane_kwargs: dict[str, Any] = {
            "the_t": at.get("T", 0), "the_c": at.get("C", 0), "the_z": at.get("Z", 0),
        }  # fmt: skip
        record = records.get(tuple(index))
        if record is not None:
            for key in _PLANE_KEYS & record.keys():
                plane_kwargs[key] = float(record[key])
            if "delta_t" in plane_kwargs:
                plane_kwargs["delta_t_unit"] = "s"
            if "exposure_time" in plane_kwargs:
                plane_kwargs["exposure_time_unit"] = "ms"
            free = {k: v for k, v in record.items() if k not in _PLANE_KEYS | {"index"}}
            annotation_id = f"Annotation:{image_index}:{ifd}"
            annotations.append(
                ome.MapAnnotation(
                    id=annotation_id,
                    namespace=FRAME_NAMESPACE,
                    value=ome.Map(ms=[ome.Map.M(k=k, value=_text(v)) for k, v in free.items()]),
                )
            )
            plane_kwargs["annotation_refs"] = [ome.AnnotationRef(id=annotation_id)]
        planes.append(ome.Plane(**plane_kwargs))
        tiff_data.append(
            ome.TiffData(
                ifd=ifd,
                first_t=at.get("T", 0),
                first_c=at.get("C", 0),
                first_z=at.get("Z", 0),
                plane_count=1,
            )
        )
    pixels = ome.Pixels(
        id=pixels_id,
        dimension_order=ome.Pixels_DimensionOrder(order),
        type=ome.PixelType(_PIXEL_TYPES[array.dtype.name]),
        size_x=shape[-1],
        size_y=shape[-2],
        size_z=sizes["Z"],
        size_c=sizes["C"],
        size_t=sizes["T"],
        big_endian=False,
        channels=channels,
        planes=planes,
        tiff_data_blocks=tiff_data,
        **pixels_kwargs,
    )
    image_refs = []
    for number, (namespace, entries) in enumerate(global_metadata.items()):
        global_id = f"Annotation:{image_index}:global:{number}"
        annotations.append(
            ome.MapAnnotation(
                id=global_id,
                namespace=namespace,
                value=ome.Map(ms=[ome.Map.M(k=k, value=_text(v)) for k, v in entries.items()]),
            )
        )
        image_refs.append(ome.AnnotationRef(id=global_id))
    image = ome.Image(
        id=f"Image:{image_index}", name=array.position.name, pixels=pixels,
        annotation_refs=image_refs,
    )  # fmt: skip
    document = ome.OME(
        images=[image],
        structured_annotations=ome.StructuredAnnotations(map_annotations=annotations),
        creator="ome-stream",
    )
    plate = layout.settings.plate
    if plate is not None:
        row, column = array.position.plate_row, array.position.plate_column
        assert row is not None and column is not None
        fields = layout.wells()[(row, column)]
        document.plates = [
            ome.Plate(
                id="Plate:0",
                name=plate.name,
                rows=len(plate.row_names),
                columns=len(plate.column_names),
                wells=[
                    ome.Well(
                        id=f"Well:{row}{column}",
                        row=plate.row_names.index(row),
                        column=plate.column_names.index(column),
                        well_samples=[
                            ome.WellSample(
                                id=f"WellSample:{row}{column}:{fields.index(array)}",
                                index=image_index,
                                image_ref=ome.ImageRef(id=image.id),
                            )
                        ],
                    )
                ],
            )
        ]
    return document


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
