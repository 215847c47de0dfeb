"""OME-XML for OME-TIFF, built with ome-types from the Layout and the acquisition record.

One position is one file. The OME-XML describing the whole acquisition (every image,
the plate, the global annotations) is placed as ``multi_file_metadata`` says, as
ome-writers places it:

- one position (``prefer_single_file`` not "never"): the file holds it all;
- ``"redundant"`` (the default): every file holds the whole document, under its own
  UUID, each image's TiffData naming its file by UUID and FileName, so a reader opening
  any one file (Bio-Formats, Fiji) finds every position and every well. Each file
  carries the Planes and per-frame annotations of its own frames only;
- ``"master-tiff"``: the first file holds the whole document (every image's Planes),
  the others a BinaryOnly reference to it;
- ``"companion-file"``: a ``companion.ome`` XML file holds it, every TIFF a BinaryOnly
  reference to it.

Frame metadata: ``delta_t``, ``exposure_time`` (seconds, as given) and
``position_x/y/z`` (in the unit of the x, y and z dimensions, µm by default) become
Plane attributes; the other keys a MapAnnotation referenced by the Plane. Each
position's stage coordinates become the image's StageLabel.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from ome_types import model as ome

from ome_stream.layout import AcquisitionRecord, stage_coordinate
from ome_stream.settings import OmeTiffFormat
from ome_stream.settings.dimensions import effective_type

if TYPE_CHECKING:
    from ome_stream.layout import ArraySpec, Layout
    from ome_stream.settings import Dimension

__all__ = [
    "COMPANION_INDEX",
    "FRAME_NAMESPACE",
    "TiffFiles",
    "ome_letters",
    "tiff_documents",
    "tiff_files",
]

FRAME_NAMESPACE = "ome-stream.org/frame-metadata"
#: Key of the companion file's document in ``get_metadata`` (as in ome-writers).
COMPANION_INDEX = -1

_PIXEL_TYPES = {
    "int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8", "uint16": "uint16",
    "uint32": "uint32", "float32": "float", "float64": "double", "bool": "bit",
}  # fmt: skip
_LENGTH_UNITS = {
    "angstrom": "Å", "nanometer": "nm", "micrometer": "µm", "millimeter": "mm",
    "centimeter": "cm", "meter": "m", "picometer": "pm", "kilometer": "km",
    "um": "µm", "µm": "µm", "nm": "nm", "mm": "mm",
}  # fmt: skip
_TIME_UNITS = {
    "second": "s", "millisecond": "ms", "microsecond": "µs", "nanosecond": "ns",
    "minute": "min", "hour": "h",
}  # fmt: skip
# frame metadata keys with a home in <Plane>; the rest become a MapAnnotation
_PLANE_KEYS = ("delta_t", "exposure_time", "position_x", "position_y", "position_z")

Mode = Literal["single", "redundant", "master-tiff", "companion-file"]


@dataclass(frozen=True)
class TiffFiles:
    """The files of an OME-TIFF acquisition and where its OME-XML goes."""

    mode: Mode
    paths: list[str]
    """The TIFF file of each image (position), in position order."""
    companion: str | None
    """The companion OME-XML file (``"companion-file"`` mode only)."""


def tiff_files(layout: Layout) -> TiffFiles:
    """The files ``layout`` writes.

    From the settings' ``prefer_single_file`` and ``multi_file_metadata`` (ome-writers'
    format options); several positions and ``prefer_single_file="always"`` raise
    NotImplementedError, as in ome-writers.
    """
    settings = layout.settings
    fmt = settings.format
    assert isinstance(fmt, OmeTiffFormat)
    many = len(layout.images) > 1
    if fmt.prefer_single_file == "always" and many:
        raise NotImplementedError(
            "Single-file structure with multiple positions is not supported: each "
            "position is its own OME-TIFF file; use prefer_single_file='auto' or 'never'"
        )
    paths = [str(p) for p in settings.tiff_file_paths()]
    if fmt.single_file(len(layout.images)):
        return TiffFiles("single", paths, None)
    companion = None
    if fmt.multi_file_metadata == "companion-file":
        companion = os.path.join(settings.output_path, fmt.companion_file)
    return TiffFiles(fmt.multi_file_metadata, paths, companion)


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


def length_unit(dim: Dimension | None) -> str:
    """The OME length unit symbol of a spatial dimension (µm when it has none)."""
    if dim is None or effective_type(dim) != "space" or not dim.unit:
        return "µm"
    return _LENGTH_UNITS.get(dim.unit, "µm")


def tiff_documents(layout: Layout, record: AcquisitionRecord) -> dict[int, ome.OME]:
    """The OME document of every file, keyed as ``get_metadata`` shows them.

    Keys are position indices (the position's TIFF file) and, in "companion-file"
    mode, :data:`COMPANION_INDEX` for the companion file. Documents given to
    ``update_metadata`` (``record.overrides``) replace the generated ones.
    """
    files = tiff_files(layout)
    uuids = layout.file_uuids
    every = range(len(layout.images))
    docs: dict[int, ome.OME] = {}
    if files.mode == "single":
        docs[0] = _document(layout, record, files, every, uuids[0])
    elif files.mode == "redundant":
        # the images without planes are the same in every file: built once
        plain = _document(layout, record, files, [], uuids[0]).images
        for index in every:
            docs[index] = _document(layout, record, files, [index], uuids[index], plain)
    else:
        if files.mode == "master-tiff":
            key, target, target_uuid = 0, files.paths[0], uuids[0]
        else:
            assert files.companion is not None
            key, target, target_uuid = COMPANION_INDEX, files.companion, uuids[-1]
        docs[key] = _document(layout, record, files, every, target_uuid)
        for index in every:
            if index != key:
                docs[index] = ome.OME(
                    uuid=uuids[index],
                    creator="ome-stream",
                    binary_only=ome.OME.BinaryOnly(
                        metadata_file=os.path.basename(target), uuid=target_uuid
                    ),
                )
    for key, document in record.overrides.items():
        if key in docs:
            docs[key] = document
    return docs


def _document(
    layout: Layout,
    record: AcquisitionRecord,
    files: TiffFiles,
    planes_of: Any,
    uuid: str,
    plain: list[ome.Image] | None = None,
) -> ome.OME:
    """The whole document, with the Planes of the images in ``planes_of``.

    ``plain``: the other images, already built.
    """
    annotations: list[ome.MapAnnotation] = []
    images = []
    for array in layout.images:
        index = array.position_index
        if plain is not None and index not in planes_of:
            images.append(plain[index])
            continue
        entries = record.frame_metadata[index] if index in planes_of else []
        images.append(
            _image(layout, array, record.final_shapes[index], entries, files, annotations)
        )
    global_refs = []
    for number, (namespace, entries) in enumerate(record.global_metadata.items()):
        annotation_id = f"Annotation:global:{number}"
        value = ome.Map(ms=[ome.Map.M(k=k, value=json.dumps(v)) for k, v in entries.items()])
        annotations.append(ome.MapAnnotation(id=annotation_id, namespace=namespace, value=value))
        global_refs.append(ome.AnnotationRef(id=annotation_id))
    for image in images:
        image.annotation_refs = list(global_refs)
    # model_construct: every part is validated already; OME() would also walk the whole
    # tree to link references (86 ms a document at 100 images, once per file)
    return ome.OME.model_construct(
        uuid=uuid,
        creator="ome-stream",
        images=images,
        plates=_plates(layout),
        structured_annotations=ome.StructuredAnnotations(map_annotations=annotations)
        if annotations
        else None,
    )


def _image(
    layout: Layout,
    array: ArraySpec,
    shape: tuple[int, ...],
    entries: list[dict[str, Any]],
    files: TiffFiles,
    annotations: list[ome.MapAnnotation],
) -> ome.Image:
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
    units = {"x": length_unit(x_dim), "y": length_unit(y_dim), "z": length_unit(by_letter.get("Z"))}
    image_index = array.position_index

    pixels_kwargs: dict[str, Any] = {}
    for axis, dim in (("x", x_dim), ("y", y_dim), ("z", by_letter.get("Z"))):
        if dim is not None and dim.scale is not None:
            pixels_kwargs[f"physical_size_{axis}"] = float(dim.scale)
            pixels_kwargs[f"physical_size_{axis}_unit"] = units[axis]
    t_dim = by_letter.get("T")
    if t_dim is not None and t_dim.scale is not None:
        pixels_kwargs["time_increment"] = float(t_dim.scale)
        unit = _TIME_UNITS.get(t_dim.unit or "second")
        if unit:
            pixels_kwargs["time_increment_unit"] = unit

    planes = []
    for number, entry in enumerate(entries):
        at = dict(zip(letters, entry["storage_index"], strict=True))
        plane_kwargs: dict[str, Any] = {
            "the_t": at.get("T", 0), "the_c": at.get("C", 0), "the_z": at.get("Z", 0),
        }  # fmt: skip
        for key in _PLANE_KEYS:
            if entry.get(key) is not None:
                plane_kwargs[key] = float(entry[key])
        for axis in "xyz":
            if f"position_{axis}" in plane_kwargs:
                plane_kwargs[f"position_{axis}_unit"] = units[axis]
        for key in ("delta_t", "exposure_time"):
            if key in plane_kwargs:
                plane_kwargs[f"{key}_unit"] = "s"
        free = {k: v for k, v in entry.items() if k not in (*_PLANE_KEYS, "storage_index")}
        if free:
            annotation_id = f"Annotation:{image_index}:{number}"
            annotations.append(
                ome.MapAnnotation(
                    id=annotation_id,
                    namespace=FRAME_NAMESPACE,
                    value=ome.Map(ms=[ome.Map.M(k=k, value=_text(v)) for k, v in free.items()]),
                )
            )
            plane_kwargs["annotation_refs"] = [ome.AnnotationRef(id=annotation_id)]
        planes.append(ome.Plane(**plane_kwargs))

    plane_count = int(np.prod(shape[:-2], dtype=np.int64))
    tiff_data = []
    if plane_count:
        if files.mode == "single":
            tiff_data.append(ome.TiffData(ifd=0, plane_count=plane_count))
        else:
            uuid = ome.TiffData.UUID(
                value=layout.file_uuids[image_index],
                file_name=os.path.basename(files.paths[image_index]),
            )
            tiff_data.append(ome.TiffData(ifd=0, plane_count=plane_count, uuid=uuid))
    pixels = ome.Pixels(
        id=f"Pixels:{image_index}",
        dimension_order=ome.Pixels_DimensionOrder(order),
        type=ome.PixelType(_PIXEL_TYPES[array.dtype.name]),
        size_x=shape[-1],
        size_y=shape[-2],
        size_z=sizes["Z"],
        size_c=sizes["C"],
        size_t=sizes["T"],
        big_endian=False,
        channels=_channels(by_letter.get("C"), sizes["C"], image_index),
        planes=planes,
        tiff_data_blocks=tiff_data,
        **pixels_kwargs,
    )
    return ome.Image(
        id=f"Image:{image_index}",
        name=array.position.name,
        acquisition_date=layout.acquisition_date,
        stage_label=_stage_label(array, units),
        pixels=pixels,
    )


def _channels(c_dim: Dimension | None, count: int, image_index: int) -> list[ome.Channel]:
    info = (c_dim.channels if c_dim is not None else None) or []
    channels = []
    for c in range(count):
        channel = info[c] if c < len(info) else None
        kwargs: dict[str, Any] = {"id": f"Channel:{image_index}:{c}", "samples_per_pixel": 1}
        if channel is not None:
            kwargs["name"] = channel.name
            if channel.color is not None:
                kwargs["color"] = ome.Color(channel.color.as_rgb_tuple(alpha=False))
            for theirs, value in (
                ("emission_wavelength", channel.emission_wavelength_nm),
                ("excitation_wavelength", channel.excitation_wavelength_nm),
            ):
                if value is not None:
                    kwargs[theirs] = float(value)
                    kwargs[f"{theirs}_unit"] = "nm"
            if channel.fluorophore is not None:
                kwargs["fluor"] = channel.fluorophore
        channels.append(ome.Channel(**kwargs))
    return channels


def _stage_label(array: ArraySpec, units: dict[str, str]) -> ome.StageLabel | None:
    coordinates = {axis: stage_coordinate(array.position, axis) for axis in "xyz"}
    if all(v is None for v in coordinates.values()):
        return None
    kwargs: dict[str, Any] = {"name": array.position.name}
    for axis, value in coordinates.items():
        if value is not None:
            kwargs[axis] = value
            kwargs[f"{axis}_unit"] = units[axis]
    return ome.StageLabel(**kwargs)


def _plates(layout: Layout) -> list[ome.Plate]:
    plate = layout.settings.plate
    if plate is None:
        return []
    wells = []
    for (row, column), fields in layout.wells().items():
        r, c = plate.row_names.index(row), plate.column_names.index(column)
        wells.append(
            ome.Well(
                id=f"Well:{r}_{c}",
                row=r,
                column=c,
                well_samples=[
                    ome.WellSample(
                        id=f"WellSample:{a.position_index}",
                        index=a.position_index,
                        image_ref=ome.ImageRef(id=f"Image:{a.position_index}"),
                    )
                    for a in fields
                ],
            )
        )
    return [
        ome.Plate(
            id="Plate:0",
            name=plate.name,
            rows=len(plate.row_names),
            columns=len(plate.column_names),
            row_naming_convention=_naming(plate.row_names),
            column_naming_convention=_naming(plate.column_names),
            wells=wells,
        )
    ]


def _naming(names: list[str]) -> ome.NamingConvention | None:
    if all(n.isalpha() for n in names):
        return ome.NamingConvention.LETTER
    if all(n.isdigit() for n in names):
        return ome.NamingConvention.NUMBER
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
