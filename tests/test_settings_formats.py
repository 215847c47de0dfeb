"""Formats and the incremental AcquisitionSettings, as ome-writers 0.3.2 defines them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_types import from_xml
from pydantic import ValidationError

from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    OmeTiffFormat,
    OmeZarrFormat,
    Plate,
    Position,
    ScratchFormat,
    create_stream,
    dims_from_standard_axes,
)

DIMS = dims_from_standard_axes({"t": 2, "c": 2, "y": 8, "x": 8})


@pytest.mark.parametrize(
    ("root", "fmt", "expected"),
    [
        ("", "auto", ScratchFormat()),
        ("", "memory", ScratchFormat()),
        ("run.zarr", "scratch", ScratchFormat()),
        ("run.ome.tif", "auto", OmeTiffFormat(suffix=".ome.tif")),
        ("run.TIFF", "auto", OmeTiffFormat(suffix=".TIFF")),
        ("run.zarr", "auto", OmeZarrFormat(suffix=".zarr")),
        ("run", "zarr", OmeZarrFormat()),
        ("run", "tiff", OmeTiffFormat()),
        ("run.zarr", "zarrs-python", OmeZarrFormat(backend="zarrs-python", suffix=".zarr")),
        ("run", "tifffile", OmeTiffFormat(backend="tifffile")),
        (
            "run",
            {"name": "ome-zarr", "backend": "zarr-python"},
            OmeZarrFormat(backend="zarr-python"),
        ),
        ("run.ome.zarr", {"name": "ome-zarr"}, OmeZarrFormat()),
        ("run", OmeTiffFormat(prefer_single_file=False), OmeTiffFormat(prefer_single_file="never")),
    ],
)
def test_format_resolution(root: str, fmt: object, expected: object) -> None:
    settings = AcquisitionSettings(root_path=root, format=fmt)  # type: ignore[arg-type]
    assert settings.format == expected


def test_a_format_dict_is_not_changed_and_unknown_keys_are_errors() -> None:
    given = {"name": "ome-zarr"}
    AcquisitionSettings(root_path="a.zarr", format=given)  # type: ignore[arg-type]
    assert given == {"name": "ome-zarr"}
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        AcquisitionSettings(root_path="a", format={"name": "ome-tiff", "compresion": "lzw"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="multi_file_metadata"):
        OmeTiffFormat(multi_file_metadata="sidecar")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="`backend` is no longer a top-level field"):
        AcquisitionSettings(root_path="a.zarr", backend="tensorstore")  # type: ignore[call-arg]


def test_scratch_and_tiff_options_carry_ome_writers_defaults() -> None:
    scratch = ScratchFormat()
    assert (scratch.max_memory_bytes, scratch.spill_to_disk, scratch.suffix) == (4 << 30, True, "")
    assert ScratchFormat(max_memory_bytes=1024, spill_to_disk=False).max_memory_bytes == 1024
    tiff = OmeTiffFormat()
    assert (tiff.prefer_single_file, tiff.multi_file_metadata, tiff.companion_file) == (
        "auto",
        "redundant",
        "companion.ome",
    )
    s = AcquisitionSettings(root_path="", dimensions=DIMS, dtype="u2")
    assert (s.file_format, s.backend, s.output_path) == ("scratch", "scratch", "")


def test_output_paths_follow_the_format() -> None:
    two = [Dimension(name="p", type="position", coords=["a", "b"]), *DIMS]
    cases = [
        ("x/run.ome.zarr", "auto", DIMS, "x/run.ome.zarr"),
        ("x/run", "ome-zarr", DIMS, "x/run.ome.zarr"),
        ("x/run.ome.tiff", "auto", DIMS, "x/run.ome.tiff"),
        ("x/run.ome.tiff", "auto", two, "x/run"),
        ("x/run.tif", {"name": "ome-tiff", "prefer_single_file": "never"}, DIMS, "x/run"),
    ]
    for root, fmt, dims, expected in cases:
        s = AcquisitionSettings(root_path=root, format=fmt, dimensions=dims, dtype="u2")  # type: ignore[arg-type]
        assert s.output_path == expected, (root, fmt)
    s = AcquisitionSettings(root_path="x/run.ome.tiff", dimensions=two, dtype="u2")
    assert s.tiff_file_paths() == ["x/run/run_p000.ome.tiff", "x/run/run_p001.ome.tiff"]


def test_prefer_single_file_never_writes_a_directory(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "one.ome.tiff",
        format=OmeTiffFormat(prefer_single_file="never"),
        dimensions=DIMS,
        dtype="uint16",
    )
    frames = make_frames(4, (8, 8))
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
    (path,) = settings.tiff_file_paths()
    assert Path(path).parent == tmp_path / "one" and Path(path).is_file()
    with tifffile.TiffFile(path) as tif:
        np.testing.assert_array_equal(tif.asarray().reshape(4, 8, 8), frames)
        assert from_xml(tif.ome_metadata).images[0].pixels.size_c == 2


def test_incremental_construction_in_assignment_order() -> None:
    settings = AcquisitionSettings()
    assert (settings.root_path, settings.dimensions, settings.dtype) == ("", (), "")
    for member in ("shape", "positions", "output_path", "num_frames", "index_dimensions"):
        with pytest.raises(ValueError, match=f"Cannot access '{member}'"):
            getattr(settings, member)
    with pytest.raises(ValueError, match="dimensions must be set"):
        settings.validate_stream_ready()
    settings.format = "ome-zarr"
    settings.plate = Plate(row_names=["G"], column_names=["11"])  # checked once there are dims
    with pytest.raises(ValidationError, match="Plate mode requires a position dimension"):
        settings.dimensions = tuple(DIMS)
    assert settings.dimensions == ()  # a refused assignment changes nothing
    well_g11 = Position(name="center", plate_row="G", plate_column="11")
    settings.dimensions = (Dimension(name="p", coords=[well_g11]), *DIMS)
    with pytest.raises(ValueError, match="dtype must be set"):
        settings.validate_stream_ready()
    with pytest.raises(ValidationError, match="Invalid dtype"):
        settings.dtype = "pixels"
    settings.dtype = "int16"
    with pytest.raises(ValueError, match="root_path is required for ome-zarr"):
        settings.validate_stream_ready()
    settings.root_path = "plate.ome.zarr"
    assert settings.validate_stream_ready() is True
    assert (settings.positions[0].name, settings.num_frames) == ("center", 4)


def test_derived_members() -> None:
    s = AcquisitionSettings(
        root_path="d.ome.zarr",
        dtype="u1",
        dimensions=[
            Dimension(name="c", type="channel", coords=["DAPI", "GFP"]),
            Dimension(name="p", type="position", coords=["a", "b", "c"]),
            Dimension(name="t", count=4, type="time"),
            *dims_from_standard_axes({"y": 6, "x": 5}),
        ],
    )
    names = lambda dims: [d.name for d in dims]  # noqa: E731
    assert s.shape == (2, 3, 4, 6, 5)
    assert names(s.array_dimensions) == ["c", "t", "y", "x"]
    assert names(s.index_dimensions) == ["c", "t"]
    assert names(s.storage_index_dimensions) == ["t", "c"]
    assert names(s.array_storage_dimensions) == ["t", "c", "y", "x"]
    assert names(s.frame_dimensions) == ["y", "x"]
    assert s.storage_index_permutation == (1, 0)
    assert s.position_dimension_index == 1
    assert [p.name for p in s.positions] == ["a", "b", "c"]
    assert (s.num_frames, s.is_unbounded, s.frame_shape) == (24, False, (6, 5))
    s.storage_order = "acquisition"
    assert s.storage_index_permutation is None


@pytest.mark.parametrize("root", ["one.ome.tiff", "one.ome.zarr"])
def test_a_single_frame_image_is_written(tmp_path: Path, root: str) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / root, dimensions=dims_from_standard_axes({"y": 8, "x": 6}), dtype="u2"
    )
    (frame,) = make_frames(1, (8, 6))
    with create_stream(settings) as stream:
        stream.append(frame)
    if root.endswith(".tiff"):
        np.testing.assert_array_equal(tifffile.imread(settings.output_path), frame)
    else:
        np.testing.assert_array_equal(zarr.open_array(f"{settings.output_path}/0")[...], frame)


def test_one_tiff_file_for_several_positions_is_not_implemented() -> None:
    settings = AcquisitionSettings(
        root_path="m.ome.tiff",
        dimensions=[Dimension(name="p", type="position", coords=["a", "b"]), *DIMS],
        dtype="u2",
        format={"name": "ome-tiff", "prefer_single_file": "always"},
    )
    assert settings.output_path == "m.ome.tiff"
    with pytest.raises(NotImplementedError, match="Single-file structure with multiple"):
        settings.validate_stream_ready()


def test_untyped_standard_names_are_stored_and_described_by_name(tmp_path: Path) -> None:
    from ome_zarr_models.v05.image import Image

    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.zarr",
        dtype="uint16",
        dimensions=[Dimension(name="c", count=2), Dimension(name="t", count=3), *DIMS[-2:]],
    )
    assert [d.type for d in settings.dimensions[:2]] == [None, None]
    frames = make_frames(6, (8, 8))
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
    group = zarr.open_group(settings.output_path, mode="r")
    Image.from_zarr(group)  # valid OME-Zarr 0.5: t and c typed by their names
    axes = dict(group.attrs)["ome"]["multiscales"][0]["axes"]
    assert [(a["name"], a.get("type")) for a in axes] == [
        ("t", "time"),
        ("c", "channel"),
        ("y", "space"),
        ("x", "space"),
    ]
    stored = zarr.open_array(f"{settings.output_path}/0", mode="r")[...]
    for c in range(2):
        for t in range(3):
            np.testing.assert_array_equal(stored[t, c], frames[c * 3 + t])
