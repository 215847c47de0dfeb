"""What a dataset on disk holds, read from its files (zarr attributes, OME-XML).

:func:`describe` returns a JSON-ready summary of an OME-Zarr or OME-TIFF dataset: its
format and layout, and for every image its path, shape, dtype, chunks and shards,
compression, channels, pixel sizes, time interval, position and stage coordinates, well
and field, and how many frames carry metadata. :func:`render` turns it into text for a
person. Both back ``ome-stream info``. Nothing comes from ome-stream's settings: only what
another reader would see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["describe", "render", "to_json"]

_TIFF_SUFFIXES = (".tif", ".tiff")


def describe(path: str | Path) -> dict[str, Any]:
    """A JSON-ready summary of the dataset at ``path``.

    Parameters
    ----------
    path
        An OME-Zarr root (or an image group inside one), an OME-TIFF file, or a directory
        of OME-TIFF files (one acquisition written one file per position).

    Returns
    -------
    dict
        ``format``, ``layout``, ``images`` (one entry per image) and, where present,
        ``plate``, ``files`` (OME-TIFF) and ``problems`` (metadata validation).

    Raises
    ------
    FileNotFoundError
        Nothing exists at ``path``.
    ValueError
        ``path`` is neither OME-Zarr nor OME-TIFF.

    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if (root / "zarr.json").is_file():
        return _describe_zarr(root)
    if root.is_file() and root.name.lower().endswith(_TIFF_SUFFIXES):
        return _describe_tiff(root, _acquisition_files(root))
    if root.is_dir():
        tiffs = sorted(p for p in root.iterdir() if p.name.lower().endswith(_TIFF_SUFFIXES))
        if tiffs:
            return _describe_tiff(root, tiffs)
    raise ValueError(f"{root} is neither OME-Zarr (no zarr.json) nor OME-TIFF")


# --- OME-Zarr --------------------------------------------------------------------------------


def _attrs(path: Path) -> dict[str, Any]:
    """The attributes of the zarr group at ``path`` (plain JSON)."""
    import zarr

    attributes: dict[str, Any] = dict(zarr.open_group(str(path), mode="r").attrs.asdict())
    return attributes


def _describe_zarr(root: Path) -> dict[str, Any]:
    import zarr

    group = zarr.open_group(str(root), mode="r")
    ome: dict[str, Any] = _attrs(root).get("ome") or {}
    info: dict[str, Any] = {"path": str(root), "format": f"OME-Zarr {ome.get('version', '?')}"}
    images: list[tuple[str, dict[str, Any]]] = []  # (path inside the root, extra fields)
    if "multiscales" in ome:
        info["layout"] = "single image"
        images = [("", {})]
        kind = "image"
    elif "plate" in ome:
        plate = ome["plate"]
        info["layout"] = "plate"
        kind = "plate"
        wells = []
        for well in plate.get("wells", []):
            well_ome = _attrs(root / well["path"]).get("ome", {})
            fields = [entry["path"] for entry in well_ome.get("well", {}).get("images", [])]
            row, column = well["path"].split("/")
            wells.append({"path": well["path"], "row": row, "column": column, "fields": fields})
            images += [(f"{well['path']}/{f}", {"well": well["path"], "field": f}) for f in fields]
        row_names = [r["name"] for r in plate.get("rows", [])]
        column_names = [c["name"] for c in plate.get("columns", [])]
        info["plate"] = {
            "name": plate.get("name"),
            "rows": len(row_names),
            "columns": len(column_names),
            "row_names": row_names,
            "column_names": column_names,
            "wells": wells,
        }
    elif "bioformats2raw.layout" in ome:
        info["layout"] = "multi-position (bioformats2raw layout)"
        kind = "collection"
        series: list[str] = []
        if (root / "OME" / "zarr.json").is_file():
            series = list(_attrs(root / "OME").get("ome", {}).get("series", []))
        if not series:  # the layout's fallback: the image groups 0, 1, 2, ...
            series = sorted((n for n, _ in group.groups() if n.isdigit()), key=int)
        images = [(s, {}) for s in series]
    else:
        raise ValueError(f"{root} is a zarr group without OME metadata")
    info["images"] = [_zarr_image(root, sub, extra) for sub, extra in images]
    problems = _validate_zarr(group, kind)
    info["problems"] = [problems] if problems else []
    return info


def _zarr_image(root: Path, sub: str, extra: dict[str, Any]) -> dict[str, Any]:
    import zarr

    attributes = _attrs(root / sub if sub else root)
    ome = attributes.get("ome") or {}
    multiscales = (ome.get("multiscales") or [{}])[0]
    axes = multiscales.get("axes", [])
    names = [a["name"] for a in axes]
    datasets = multiscales.get("datasets", [])
    image: dict[str, Any] = {"path": sub or ".", "name": multiscales.get("name"), **extra}
    levels = []
    for dataset in datasets:
        array = zarr.open_array(str(root / sub / dataset["path"]), mode="r")
        chunks, shards, compression = _zarr_storage(array.metadata.to_dict(), array.chunks)
        levels.append(
            {
                "path": dataset["path"],
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "chunks": chunks,
                "shards": shards,
                "compression": compression,
            }
        )
    image["axes"] = names
    image["levels"] = levels
    scale: list[float] = []
    if datasets:
        for transform in datasets[0].get("coordinateTransformations", []):
            if transform.get("type") == "scale":
                scale = transform["scale"]
    image["pixel_size"] = {
        a["name"]: [scale[i] if i < len(scale) else 1.0, a.get("unit")]
        for i, a in enumerate(axes)
        if a.get("type") == "space"
    }
    time_axes = [i for i, a in enumerate(axes) if a.get("type") == "time"]
    if time_axes and time_axes[0] < len(scale):
        image["time_interval"] = [scale[time_axes[0]], axes[time_axes[0]].get("unit")]
    image["channels"] = [
        {"name": c.get("label"), "color": c.get("color"), "window": c.get("window")}
        for c in (ome.get("omero") or {}).get("channels", [])
    ]
    ours = attributes.get("ome_stream") or {}
    if isinstance(ours.get("position"), dict):
        image["position"] = ours["position"]
    records = (attributes.get("ome_writers") or {}).get("frame_metadata")
    if records is None:
        records = ours.get("frame_metadata")
    image["frame_metadata"] = _frame_summary(records or [])
    return image


def _zarr_storage(
    metadata: dict[str, Any], chunks: tuple[int, ...]
) -> tuple[list[int], list[int] | None, str]:
    codecs = metadata.get("codecs", [])
    shards = None
    for codec in codecs:
        if codec.get("name") == "sharding_indexed":
            shards = metadata["chunk_grid"]["configuration"]["chunk_shape"]
            inner = codec["configuration"]
            return list(inner["chunk_shape"]), list(shards), _codec_names(inner["codecs"])
    return list(chunks), shards, _codec_names(codecs)


def _codec_names(codecs: list[dict[str, Any]]) -> str:
    names = []
    for codec in codecs:
        name, config = codec.get("name"), codec.get("configuration") or {}
        if name in ("bytes", "transpose", "crc32c"):
            continue
        if name == "blosc":
            names.append(f"blosc-{config.get('cname', '?')} (level {config.get('clevel', '?')})")
        elif "level" in config:
            names.append(f"{name} (level {config['level']})")
        else:
            names.append(str(name))
    return ", ".join(names) or "none"


def _frame_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    keys = sorted({k for r in records for k in r if k not in ("index", "storage_index")})
    return {"frames": len(records), "keys": keys}


def _validate_zarr(group: Any, kind: str) -> str:
    try:
        from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
        from ome_zarr_models.v05.hcs import HCS
        from ome_zarr_models.v05.image import Image
    except ImportError:  # pragma: no cover - ome-zarr-models is in the test extra
        return "not validated (install ome-zarr-models)"
    model: Any = {"plate": HCS, "image": Image}.get(kind, BioFormats2Raw)
    try:
        model.from_zarr(group)
    except Exception as err:  # any validation failure is reported, not raised
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"OME-Zarr metadata invalid: {first}"
    return ""


# --- OME-TIFF --------------------------------------------------------------------------------


def _acquisition_files(path: Path) -> list[Path]:
    """``path`` and every file its OME-XML names (TiffData UUID FileName)."""
    import tifffile
    from ome_types import from_xml

    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    files = {path.resolve(): path}
    if xml:
        try:
            ome = from_xml(xml)
        except Exception:  # an unreadable XML is reported by _describe_tiff
            return [path]
        for image in ome.images:
            for block in image.pixels.tiff_data_blocks:
                name = block.uuid.file_name if block.uuid is not None else None
                if name:
                    other = path.parent / name
                    files.setdefault(other.resolve(), other)
    return sorted(files.values())


def _describe_tiff(root: Path, files: list[Path]) -> dict[str, Any]:
    import tifffile
    from ome_types import from_xml

    info: dict[str, Any] = {"path": str(root), "format": "OME-TIFF", "files": []}
    images: dict[str, dict[str, Any]] = {}
    plates: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for path in files:
        if not path.is_file():
            problems.append(f"{path.name}: named in the OME-XML but missing")
            continue
        with tifffile.TiffFile(path) as tif:
            page: Any = tif.pages.first
            tiled = bool(page.is_tiled)
            entry = {
                "file": path.name,
                "pages": len(tif.pages),
                "bigtiff": bool(tif.is_bigtiff),
                "compression": page.compression.name.lower(),
                "tiles": [page.tilelength, page.tilewidth] if tiled else None,
            }
            xml = tif.ome_metadata
        info["files"].append(entry)
        if not xml:
            problems.append(f"{path.name}: no OME-XML")
            continue
        try:
            ome = from_xml(xml)
        except Exception as err:  # report and go on with the other files
            problems.append(f"{path.name}: OME-XML invalid: {str(err).splitlines()[0]}")
            continue
        for image in ome.images:
            described = _tiff_image(image, ome, path.name, entry)
            # a file may describe other files' images too; the holding file has the planes
            if image.id not in images or described["path"] == path.name:
                images[image.id] = described
        for plate in ome.plates:
            _merge_plate(plates, plate, ome)
    multi = len(files) > 1 or len(images) > 1
    info["layout"] = "plate" if plates else "multi-position" if multi else "single image"
    info["images"] = list(images.values())
    for described_plate in plates.values():
        described_plate["wells"] = list(described_plate["wells"].values())
    if plates:  # one plate per acquisition
        info["plate"] = next(iter(plates.values()))
    info["problems"] = problems
    return info


def _quantity(value: Any, unit: Any) -> list[Any] | None:
    if value is None:
        return None
    return [float(value), getattr(unit, "value", unit)]


def _tiff_image(image: Any, ome: Any, file: str, storage: dict[str, Any]) -> dict[str, Any]:
    pixels = image.pixels
    order = pixels.dimension_order.value  # fastest first
    sizes = {"X": pixels.size_x, "Y": pixels.size_y, "Z": pixels.size_z}
    sizes |= {"C": pixels.size_c, "T": pixels.size_t}
    axes = [a for a in reversed(order) if a in "XY" or sizes[a] > 1]
    channels = [
        {
            "name": c.name,
            "color": None if c.color is None else c.color.as_hex(format="long").upper()[1:],
        }
        for c in pixels.channels
    ]
    pixel_size = {
        axis.lower(): _quantity(
            getattr(pixels, f"physical_size_{axis.lower()}"),
            getattr(pixels, f"physical_size_{axis.lower()}_unit"),
        )
        for axis in "XYZ"
    }
    annotated = {ref.id for p in pixels.planes for ref in p.annotation_refs}
    carrying = [
        p
        for p in pixels.planes
        if p.delta_t is not None
        or p.exposure_time is not None
        or p.position_x is not None
        or p.annotation_refs
    ]
    keys = {
        key
        for p in carrying
        for key in ("delta_t", "exposure_time", "position_x", "position_y", "position_z")
        if getattr(p, key) is not None
    }
    structured = ome.structured_annotations
    for annotation in structured.map_annotations if structured else []:
        if annotation.id in annotated:
            keys |= {m.k for m in annotation.value.ms if m.k}
    blocks = pixels.tiff_data_blocks
    if blocks and blocks[0].uuid is not None and blocks[0].uuid.file_name:
        file = blocks[0].uuid.file_name  # the file holding this image's planes
    described: dict[str, Any] = {
        "path": file,
        "id": image.id,
        "name": image.name,
        "axes": [a.lower() for a in axes],
        "dimension_order": order,
        "levels": [
            {
                "shape": [sizes[a] for a in axes],
                "dtype": pixels.type.value,
                "chunks": storage["tiles"] or [pixels.size_y, pixels.size_x],
                "shards": None,
                "compression": storage["compression"],
            }
        ],
        "pixel_size": {k: v for k, v in pixel_size.items() if v is not None},
        "channels": channels,
        "frame_metadata": {"frames": len(carrying), "keys": sorted(keys)},
    }
    if pixels.time_increment is not None:
        described["time_interval"] = _quantity(pixels.time_increment, pixels.time_increment_unit)
    label = image.stage_label
    if label is not None:
        described["position"] = {
            "name": label.name,
            **{
                axis: _quantity(getattr(label, axis), getattr(label, f"{axis}_unit"))
                for axis in "xyz"
                if getattr(label, axis) is not None
            },
        }
    return described


def _well_name(index: int, convention: Any) -> str:
    """A well's row or column name from its 0-based index and the plate's convention."""
    kind = getattr(convention, "value", convention)
    if kind == "letter":
        return chr(ord("A") + index)
    if kind == "number":
        return str(index + 1)
    return f"#{index}"  # no naming convention in the OME-XML: the 0-based index


def _merge_plate(plates: dict[str, dict[str, Any]], plate: Any, ome: Any) -> None:
    names = {image.id: image.name for image in ome.images}
    entry = plates.setdefault(
        plate.id,
        {"name": plate.name, "rows": plate.rows, "columns": plate.columns, "wells": {}},
    )
    for well in plate.wells:
        row = _well_name(well.row, plate.row_naming_convention)
        column = _well_name(well.column, plate.column_naming_convention)
        fields = entry["wells"].setdefault(f"{row}/{column}", {"row": row, "column": column})
        found = fields.setdefault("fields", [])
        for sample in well.well_samples:
            ref = sample.image_ref.id if sample.image_ref else None
            if ref not in [f["image"] for f in found]:
                found.append({"image": ref, "name": names.get(ref or "")})
    plates[plate.id] = entry


# --- text --------------------------------------------------------------------------------------


def _q(value: list[Any] | None) -> str:
    if not value:
        return "?"
    number, unit = value
    return f"{number:g} {unit}" if unit else f"{number:g}"


def render(info: dict[str, Any]) -> str:
    """``describe``'s summary as text for a person."""
    lines = [f"{info['path']}: {info['format']}, {info['layout']}, {len(info['images'])} image(s)"]
    for file in info.get("files", []):
        tiles = "x".join(map(str, file["tiles"])) if file["tiles"] else "strips"
        lines.append(
            f"  file {file['file']}: {file['pages']} pages, {file['compression']}, "
            f"tiles {tiles}{', BigTIFF' if file['bigtiff'] else ''}"
        )
    plate = info.get("plate")
    if plate is not None:
        wells = plate["wells"]
        lines.append(
            f"  plate {plate.get('name')!r}: {plate['rows']} rows x {plate['columns']} columns, "
            f"{len(wells)} well(s): "
            + ", ".join(
                f"row {w['row']} column {w['column']} ({len(w['fields'])} field(s))" for w in wells
            )
        )
    for image in info["images"]:
        lines.append(f"  image {image.get('name')!r} at {image['path']}")
        for level in image["levels"]:
            shape = ", ".join(
                f"{a} {n}" for a, n in zip(image["axes"], level["shape"], strict=False)
            )
            shards = f", shards {tuple(level['shards'])}" if level["shards"] else ""
            lines.append(
                f"    {level.get('path', 'pixels')}: ({shape}) {level['dtype']}, chunks "
                f"{tuple(level['chunks'])}{shards}, compression {level['compression']}"
            )
        if image["channels"]:
            lines.append(
                "    channels: "
                + ", ".join(
                    f"{c['name'] or '(unnamed)'}" + (f" #{c['color']}" if c["color"] else "")
                    for c in image["channels"]
                )
            )
        if image["pixel_size"]:
            lines.append(
                "    pixel size: "
                + ", ".join(f"{a} {_q(v)}" for a, v in image["pixel_size"].items())
            )
        if "time_interval" in image:
            lines.append(f"    time interval: {_q(image['time_interval'])}")
        if "well" in image:
            lines.append(f"    well {image['well']}, field {image['field']}")
        position = image.get("position")
        if position:
            coordinates = {k: v for k, v in position.items() if k in ("x", "y", "z")}
            unit = position.get("unit")
            text = ", ".join(
                f"{k} {_q(v) if isinstance(v, list) else _q([v, unit])}"
                for k, v in coordinates.items()
            )
            lines.append(f"    position {position.get('name')!r}" + (f": {text}" if text else ""))
        frames = image["frame_metadata"]
        if frames["frames"]:
            lines.append(
                f"    frames with metadata: {frames['frames']} ({', '.join(frames['keys'])})"
            )
    problems = info.get("problems") or []
    lines.append("  metadata: " + ("; ".join(problems) if problems else "valid"))
    return "\n".join(lines)


def to_json(info: dict[str, Any]) -> str:
    """``describe``'s summary as indented JSON."""
    return json.dumps(info, indent=2, default=str)
