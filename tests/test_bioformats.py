"""Bio-Formats 7.3.1 (what Fiji and OMERO use) opens every OME-TIFF we write: series from
any file of a dataset, sizes, dimension order, channels, physical sizes, planes with units,
plates and wells, pixels; each file's OME-XML valid against the schema in the jar.

Bio-Formats 7.3.1 has no OME-Zarr reader (docs/readers.md), so only OME-TIFF is checked.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile

from _bioformats import BioFormats, Opened, bioformats_fixture  # noqa: F401 (fixture)
from _settings import FIELDS, SCREEN, field_positions, well_index
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Position,
    create_stream,
    dims_from_standard_axes,
)

EXAMPLES = Path(__file__).parent.parent / "examples"
UM = "\u00b5m"


def acquire(settings: AcquisitionSettings, frames: np.ndarray, metadata=None) -> None:
    with create_stream(settings) as stream:
        for i, frame in enumerate(frames):
            stream.append(frame, metadata=metadata(i) if metadata else None)


def tcz(frames: np.ndarray, order: str, sizes: dict[str, int]) -> np.ndarray:
    """Frames acquired in ``order`` (letters of t, c, z) as a (T, C, Z, Y, X) array."""
    data = frames.reshape(*(sizes[a] for a in order), *frames.shape[-2:])
    for axis in "tcz":
        if axis not in order:
            data, order = data[np.newaxis], axis + order
    return data.transpose(*(order.index(a) for a in "tcz"), -2, -1)


def unsigned(color: int | None) -> int | None:
    return None if color is None else color & 0xFFFFFFFF


def well_map(opened: Opened) -> dict[tuple[int, int], int]:
    (plate,) = opened.plates
    return {(w["row"], w["column"]): len(w["images"]) for w in plate["wells"]}


def own_series(opened: Opened, position: int):
    """The series of the file's own position: the file's only one, or (once every file
    describes the whole dataset) the position's index among all."""
    return opened.series[position if len(opened.series) > 1 else 0]


def assert_valid(opened: list[Opened]) -> None:
    for one in opened:
        assert one.format == "OME-TIFF", one.file
        assert one.xml_errors == [], one.file


def test_the_probe_reports_invalid_ome_xml(tmp_path: Path, bioformats: BioFormats) -> None:
    """The checker can fail: a schema error in the OME-XML is reported."""
    good = tmp_path / "good.ome.tif"
    tifffile.imwrite(good, np.zeros((2, 8, 8), "uint8"), metadata={"axes": "TYX"})
    bad = tmp_path / "bad.ome.tif"
    with tifffile.TiffFile(good) as tif:
        xml = tif.ome_metadata
    assert xml is not None
    tifffile.imwrite(bad, np.zeros((2, 8, 8), "uint8"), description=xml.replace("SizeC", "SizeQ"))
    ok, broken = bioformats.open(good, bad, pixels=False)
    assert ok.xml_errors == []
    assert any("SizeQ" in e or "SizeC" in e for e in broken.xml_errors)


@pytest.mark.parametrize(
    ("order", "storage_order", "dimension_order"),
    [
        ("tczyx", "ome", "XYZCT"),
        ("tzcyx", "acquisition", "XYCZT"),
        ("ztcyx", "acquisition", "XYCTZ"),
        ("tzcyx", ["c", "t", "z", "y", "x"], "XYZTC"),
    ],
)
def test_single_image(
    tmp_path: Path, bioformats: BioFormats, order: str, storage_order, dimension_order: str
) -> None:
    sizes = {"t": 2, "c": 3, "z": 4}
    dims = {
        "t": Dimension(name="t", count=2, type="time", unit="s", scale=1.5),
        "c": Dimension(
            name="c",
            count=3,
            type="channel",
            coords=[
                Channel(name="DAPI", color="0000FF"),
                "GFP",
                Channel(name="Cy5", color="FF0000"),
            ],
        ),
        "z": Dimension(name="z", count=4, type="space", unit="um", scale=0.5),
        "y": Dimension(name="y", count=32, type="space", unit="um", scale=0.25),
        "x": Dimension(name="x", count=24, type="space", unit="um", scale=0.25),
    }
    settings = AcquisitionSettings(
        root_path=tmp_path / "one.ome.tiff",
        dimensions=[dims[a] for a in order],
        storage_order=storage_order,
        dtype="uint16",
    )
    frames = make_frames(24, (32, 24))
    acquire(settings, frames, lambda i: {"delta_t": i * 0.25})
    (opened,) = bioformats.open(settings.output_path)
    assert_valid([opened])
    (series,) = opened.series
    assert series.sizes == {"T": 2, "C": 3, "Z": 4, "Y": 32, "X": 24}
    assert series["dimension_order"] == dimension_order
    assert series["pixel_type"] == "uint16"
    assert [c["name"] for c in series["channels"]] == ["DAPI", "GFP", "Cy5"]
    colors = [unsigned(c["color"]) for c in series["channels"]]
    assert colors[0] == 0x0000FFFF and colors[2] == 0xFF0000FF
    assert series["physical_size_x"] == [0.25, UM] and series["physical_size_y"] == [0.25, UM]
    assert series["physical_size_z"] == [0.5, UM]
    assert series["time_increment"] == [1.5, "s"]
    # planes: each acquired frame i carries delta_t = i / 4 s
    acquired = np.arange(24).reshape(*(sizes[a] for a in order[:3]))
    planes = {(p["t"], p["c"], p["z"]): p for p in series["planes"]}
    assert len(planes) == 24
    for index in np.ndindex(*acquired.shape):
        at = dict(zip(order[:3], index, strict=True))
        plane = planes[at["t"], at["c"], at["z"]]
        assert plane["delta_t"] == [acquired[index] * 0.25, "s"]
    np.testing.assert_array_equal(series.pixels, tcz(frames, order[:3], sizes))


def test_plane_exposure_in_seconds_and_positions_in_micrometres(tmp_path: Path, bioformats):
    """The frame keys' units of ome-writers: exposure_time in s, position_x/y/z in µm."""
    settings = AcquisitionSettings(
        root_path=tmp_path / "xyz.ome.tiff",
        dimensions=dims_from_standard_axes({"t": 3, "y": 16, "x": 16}),
        dtype="uint8",
    )
    frames = make_frames(3, (16, 16), dtype="uint8")
    acquire(
        settings,
        frames,
        lambda i: {
            "exposure_time": 0.005,
            "position_x": 100.0 + i,
            "position_y": -50.0,
            "position_z": 7.5,
        },
    )
    ((series,),) = (o.series for o in bioformats.open(settings.output_path))
    for i, plane in enumerate(series["planes"]):
        assert plane["exposure_time"] == [0.005, "s"]
        assert plane["position_x"] == [100.0 + i, UM]
        assert plane["position_y"] == [-50.0, UM]
        assert plane["position_z"] == [7.5, UM]


def multiposition(tmp_path: Path, frames: np.ndarray) -> AcquisitionSettings:
    settings = AcquisitionSettings(
        root_path=tmp_path / "mp.ome.tiff",
        dimensions=[
            Dimension(name="t", count=2, type="time", scale=30, unit="s"),
            Dimension(
                name="p",
                type="position",
                coords=[
                    Position(name="left", x_coord=-1000.0, y_coord=20.5, z_coord=3.0),
                    Position(name="centre", x_coord=0.0, y_coord=0.0, z_coord=3.5),
                    Position(name="right", x_coord=1000.0, y_coord=-20.5, z_coord=4.0),
                ],
            ),
            *dims_from_standard_axes({"c": 2, "y": 16, "x": 16}),
        ],
        dtype="uint16",
    )
    acquire(settings, frames)
    return settings


def test_multiposition_each_file_holds_its_position(tmp_path: Path, bioformats: BioFormats):
    frames = make_frames(12, (16, 16))
    settings = multiposition(tmp_path, frames)
    files = settings.tiff_file_paths()
    opened = bioformats.open(*files)
    assert_valid(opened)
    acquisition = frames.reshape(2, 3, 2, 16, 16)
    for p, name in enumerate(["left", "centre", "right"]):
        # the series of this file's own position, whichever series index it gets
        (series,) = [s for s in opened[p].series if s["name"] == name]
        assert series.sizes == {"T": 2, "C": 2, "Z": 1, "Y": 16, "X": 16}
        np.testing.assert_array_equal(series.pixels[:, :, 0], acquisition[:, p])


def test_multiposition_any_file_shows_every_position(tmp_path: Path, bioformats: BioFormats):
    frames = make_frames(12, (16, 16))
    settings = multiposition(tmp_path, frames)
    files = settings.tiff_file_paths()
    acquisition = frames.reshape(2, 3, 2, 16, 16)
    for opened in bioformats.open(*files):
        assert sorted(opened.used_files) == sorted(files)
        assert [s["name"] for s in opened.series] == ["left", "centre", "right"]
        for p, series in enumerate(opened.series):
            np.testing.assert_array_equal(series.pixels[:, :, 0], acquisition[:, p])


def test_stage_label_per_position(tmp_path: Path, bioformats: BioFormats) -> None:
    settings = multiposition(tmp_path, make_frames(12, (16, 16)))
    expected = {
        "left": [[-1000.0, UM], [20.5, UM], [3.0, UM]],
        "centre": [[0.0, UM], [0.0, UM], [3.5, UM]],
        "right": [[1000.0, UM], [-20.5, UM], [4.0, UM]],
    }
    for opened in bioformats.open(*settings.tiff_file_paths(), pixels=False):
        for series in opened.series:
            assert series["stage_label"] == series["name"]
            assert series["stage_position"] == expected[series["name"]]


def plate(tmp_path: Path, frames: np.ndarray) -> AcquisitionSettings:
    settings = AcquisitionSettings(
        root_path=tmp_path / "plate.ome.tiff",
        dimensions=[
            Dimension(name="p", type="position", coords=field_positions(3)),
            *dims_from_standard_axes({"c": 2, "y": 8, "x": 8}),
        ],
        dtype="uint16",
        plate=SCREEN,
    )
    acquire(settings, frames)
    return settings


def test_plate_each_file_names_plate_and_its_well(tmp_path: Path, bioformats: BioFormats):
    frames = make_frames(6, (8, 8))
    settings = plate(tmp_path, frames)
    opened = bioformats.open(*settings.tiff_file_paths())
    assert_valid(opened)
    wells = [well_index(row, column) for row, column, _ in FIELDS[:3]]
    assert wells == [(1, 1), (1, 1), (3, 4)]  # B2 twice, D5
    for p, (one, well) in enumerate(zip(opened, wells, strict=True)):
        (plate_info,) = one.plates
        assert plate_info["name"] == SCREEN.name
        assert (plate_info["rows"], plate_info["columns"]) == (6, 8)
        assert well in well_map(one)
        np.testing.assert_array_equal(
            own_series(one, p).pixels[0, :, 0], frames.reshape(3, 2, 8, 8)[p]
        )


def test_plate_any_file_shows_every_well_and_field(tmp_path: Path, bioformats: BioFormats):
    frames = make_frames(6, (8, 8))
    settings = plate(tmp_path, frames)
    for one in bioformats.open(*settings.tiff_file_paths()):
        assert well_map(one) == {(1, 1): 2, (3, 4): 1}
        assert len(one.series) == 3
        for p, series in enumerate(one.series):
            np.testing.assert_array_equal(series.pixels[0, :, 0], frames.reshape(3, 2, 8, 8)[p])


@pytest.mark.parametrize("compression", ["zlib", "lzw", "zstd"])
def test_compressed_tiles(tmp_path: Path, bioformats: BioFormats, compression: str) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "c.ome.tiff",
        compression=compression,
        dtype="uint16",
        dimensions=dims_from_standard_axes({"t": 3, "y": 300, "x": 200}),
    )
    frames = make_frames(3, (300, 200))
    acquire(settings, frames)
    (opened,) = bioformats.open(settings.output_path)
    assert_valid([opened])
    np.testing.assert_array_equal(opened.series[0].pixels[:, 0, 0], frames)


def test_unbounded_time_is_trimmed_to_what_was_acquired(tmp_path: Path, bioformats: BioFormats):
    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.tiff",
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=None, type="time", unit="s"),
            Dimension(name="p", type="position", coords=["a", "b"]),
            Dimension(name="c", type="channel", coords=["Hoechst", "Alexa 647"]),
            *dims_from_standard_axes({"y": 8, "x": 8}),
        ],
    )
    frames = make_frames(12, (8, 8), dtype="uint8")  # 3 time points
    acquire(settings, frames)
    opened = bioformats.open(*settings.tiff_file_paths())
    assert_valid(opened)
    for p, one in enumerate(opened):
        series = own_series(one, p)
        assert series.sizes == {"T": 3, "C": 2, "Z": 1, "Y": 8, "X": 8}
        np.testing.assert_array_equal(series.pixels[:, :, 0], frames.reshape(3, 2, 2, 8, 8)[:, p])


@pytest.mark.parametrize(
    "name",
    ["single_5d_image", "transposed_order", "multiposition", "plate", "unbounded", "event_driven"],
)
def test_guide_examples_open_in_bioformats(tmp_path: Path, bioformats: BioFormats, name: str):
    """Every example of the usage guide, as OME-TIFF: Bio-Formats reads what tifffile reads."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = Path(module.main(tmp_path, "ome-tiff"))
    files = [out] if out.is_file() else sorted(out.glob("*.ome.tiff"))
    opened = bioformats.open(*files)
    assert_valid(opened)
    for path, one in zip(files, opened, strict=True):
        with tifffile.TiffFile(path) as tif:  # both readers list the same series
            for series, theirs in zip(one.series, tif.series, strict=True):
                order = theirs.axes[:-2]  # tifffile drops axes of size 1
                missing = tuple(i for i, a in enumerate("TCZ") if a not in order)
                kept = "".join(a for a in "TCZ" if a in order)
                got = series.pixels.squeeze(axis=missing)
                got = got.transpose(*(kept.index(a) for a in order), -2, -1)
                np.testing.assert_array_equal(got, theirs.asarray())
