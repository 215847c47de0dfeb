"""OME-TIFF: the guide's examples with an .ome.tiff root, read back with tifffile and
ome-types (XML validated against the OME schema), through the async and the sync API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from ome_types import from_xml, validate_xml
from pydantic import ValidationError

from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)


def read_tiff(path: Path) -> tuple[np.ndarray, object]:
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
        assert xml is not None, "no OME-XML in the first page"
        validate_xml(xml)
        return tif.series[0].asarray(), from_xml(xml)


async def acquire(settings: AcquisitionSettings, frames: np.ndarray, metadata=None) -> None:
    async with open_stream(settings) as stream:
        for i, frame in enumerate(frames):
            await stream.append(frame, metadata=metadata(i) if metadata else None)


def acquire_sync(settings: AcquisitionSettings, frames: np.ndarray) -> None:
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)


@pytest.mark.anyio
@pytest.mark.parametrize("order", ["tczyx", "tzcyx", "ztcyx"])
async def test_single_5d_any_tcz_order_is_stored_as_acquired(tmp_path: Path, order: str):
    counts = {"t": 2, "c": 3, "z": 4}
    dims = [
        Dimension(name="t", count=2, type="time", unit="s", scale=1.5),
        Dimension(
            name="c",
            count=3,
            type="channel",
            coords=[Channel(name="DAPI", color="0000FF"), "GFP", "mCherry"],
        ),
        Dimension(name="z", count=4, type="space", unit="um", scale=0.5),
    ]
    by_name = {d.name: d for d in dims}
    settings = AcquisitionSettings(
        root_path=tmp_path / "five.ome.tiff",
        dimensions=[by_name[n] for n in order[:3]]
        + [
            Dimension(name="y", count=32, unit="um", scale=0.1),
            Dimension(name="x", count=24, unit="um", scale=0.1),
        ],
        dtype="uint16",
    )
    frames = make_frames(24, (32, 24))
    await acquire(
        settings,
        frames,
        lambda i: {
            "delta_t": i * 0.25,
            "exposure_time": 5.0,
            "position_x": 10.0 + i,
            "laser": "488",
        },
    )
    data, ome = read_tiff(tmp_path / "five.ome.tiff")
    shape = tuple(counts[n] for n in order[:3])
    np.testing.assert_array_equal(data.reshape(*shape, 32, 24), frames.reshape(*shape, 32, 24))
    pixels = ome.images[0].pixels
    expected_order = "XY" + "".join(reversed(order[:3].upper()))
    assert pixels.dimension_order.value == expected_order
    assert (pixels.size_t, pixels.size_c, pixels.size_z) == (2, 3, 4)
    assert (pixels.size_x, pixels.size_y) == (24, 32)
    assert pixels.physical_size_x == 0.1 and pixels.physical_size_z == 0.5
    assert pixels.time_increment == 1.5
    assert [c.name for c in pixels.channels] == ["DAPI", "GFP", "mCherry"]
    assert pixels.channels[0].color.as_rgb_tuple() == (0, 0, 255)
    assert len(pixels.planes) == 24 and len(pixels.tiff_data_blocks) == 24
    for page, (plane, index) in enumerate(zip(pixels.planes, np.ndindex(*shape), strict=True)):
        at = dict(zip(order[:3], index, strict=True))
        assert (plane.the_t, plane.the_c, plane.the_z) == (at["t"], at["c"], at["z"])
        assert plane.delta_t == page * 0.25 and plane.exposure_time == 5.0
        assert plane.position_x == 10.0 + page
        annotation = next(
            a
            for a in ome.structured_annotations.map_annotations
            if a.id == plane.annotation_refs[0].id
        )
        assert {m.k: m.value for m in annotation.value.ms} == {"frame": str(page), "laser": "488"}


def test_format_key_without_suffix_and_sync_api(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "output",
        format="ome-tiff",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 3, "y": 16, "x": 16}),
    )
    assert settings.output_path == str(tmp_path / "output.ome.tiff")
    frames = make_frames(3, (16, 16), dtype="uint8")
    acquire_sync(settings, frames)
    data, _ = read_tiff(tmp_path / "output.ome.tiff")
    np.testing.assert_array_equal(data, frames)


@pytest.mark.anyio
async def test_multiple_positions_one_file_each(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "dest" / "my_file.ome.tiff",
        dimensions=[
            Dimension(name="t", count=2, chunk_size=1, type="time"),
            Dimension(name="p", type="position", coords=["Pos0", "Pos1"]),
            Dimension(name="c", count=3, chunk_size=1, type="channel"),
            Dimension(name="z", count=4, chunk_size=1, type="space", scale=5, unit="um"),
            Dimension(name="y", count=16, chunk_size=16, type="space", scale=2, unit="um"),
            Dimension(name="x", count=16, chunk_size=16, type="space", scale=2, unit="um"),
        ],
        dtype="uint16",
    )
    assert settings.output_path == str(tmp_path / "dest" / "my_file")
    frames = make_frames(48, (16, 16))
    await acquire(settings, frames)
    acquisition = frames.reshape(2, 2, 3, 4, 16, 16)
    for p in range(2):
        data, ome = read_tiff(tmp_path / "dest" / "my_file" / f"my_file_p{p:03d}.ome.tiff")
        np.testing.assert_array_equal(data, acquisition[:, p])
        assert ome.images[0].name == f"Pos{p}"
        assert ome.images[0].pixels.physical_size_z == 5


def test_plate_metadata(tmp_path: Path) -> None:
    positions = [
        Position(name="fov0", plate_row="A", plate_column="1"),
        Position(name="fov0", plate_row="C", plate_column="4"),
        Position(name="fov1", plate_row="C", plate_column="4"),
    ]
    settings = AcquisitionSettings(
        root_path=tmp_path / "plate.ome.tiff",
        dimensions=[
            Dimension(name="p", type="position", coords=positions),
            *dims_from_standard_axes({"c": 2, "y": 8, "x": 8}),
        ],
        dtype="uint16",
        plate=Plate(name="Example Plate", row_names=list("ABCD"), column_names=list("12345678")),
    )
    frames = make_frames(6, (8, 8))
    acquire_sync(settings, frames)
    for p, position in enumerate(positions):
        data, ome = read_tiff(Path(settings.tiff_file_paths()[p]))
        np.testing.assert_array_equal(data, frames.reshape(3, 2, 8, 8)[p])
        plate = ome.plates[0]
        assert plate.name == "Example Plate" and (plate.rows, plate.columns) == (4, 8)
        well = plate.wells[0]
        assert (well.row, well.column) == (
            "ABCD".index(position.plate_row),
            "12345678".index(position.plate_column),
        )
        assert well.well_samples[0].image_ref.id == ome.images[0].id


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("compression", "tag"), [("zlib", "ADOBE_DEFLATE"), ("zstd", "ZSTD"), ("lzw", "LZW")]
)
async def test_compression(tmp_path: Path, compression: str, tag: str) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "c.ome.tiff",
        compression=compression,
        dtype="uint16",
        dimensions=dims_from_standard_axes({"t": 3, "y": 512, "x": 300}),
    )
    frames = make_frames(3, (512, 300))
    await acquire(settings, frames)
    data, _ = read_tiff(tmp_path / "c.ome.tiff")
    np.testing.assert_array_equal(data, frames)
    with tifffile.TiffFile(tmp_path / "c.ome.tiff") as tif:
        page = tif.pages[0]
        assert page.compression.name == tag
        assert page.is_tiled and tif.is_bigtiff


@pytest.mark.anyio
async def test_unbounded_skips_and_explicit_storage_order(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.tiff",
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=None, type="time"),
            Dimension(name="c", count=2, type="channel"),
            *dims_from_standard_axes({"y": 8, "x": 8}),
        ],
    )
    frames = make_frames(5, (8, 8))
    async with open_stream(settings) as stream:
        await stream.append(frames[0])
        await stream.skip()
        for frame in frames[2:]:
            await stream.append(frame)
    data, ome = read_tiff(tmp_path / "u.ome.tiff")
    expected = np.concatenate([frames, np.zeros((1, 8, 8), "uint16")])
    expected[1] = 0
    np.testing.assert_array_equal(data.reshape(6, 8, 8), expected)
    assert ome.images[0].pixels.size_t == 3

    reordered = AcquisitionSettings(
        root_path=tmp_path / "r.ome.tiff",
        dtype="uint16",
        storage_order=["c", "t", "z", "y", "x"],
        dimensions=dims_from_standard_axes({"t": 2, "z": 3, "c": 2, "y": 8, "x": 8}),
    )
    frames = make_frames(12, (8, 8))
    await acquire(reordered, frames)
    data, ome = read_tiff(tmp_path / "r.ome.tiff")
    assert ome.images[0].pixels.dimension_order.value == "XYZTC"
    np.testing.assert_array_equal(
        data.reshape(2, 2, 3, 8, 8), frames.reshape(2, 3, 2, 8, 8).transpose(2, 0, 1, 3, 4)
    )


@pytest.mark.anyio
async def test_view_reads_pages_back_and_global_metadata(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "v.ome.tiff",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 4, "y": 8, "x": 8}),
    )
    frames = make_frames(4, (8, 8), dtype="uint8")
    async with open_stream(settings) as stream:
        await stream.set_global_metadata("microscope", {"objective": "20x"})
        view = stream.view()
        for frame in frames[:3]:
            await stream.append(frame)
        await stream.flush()
        np.testing.assert_array_equal(await view.read(slice(0, 3)), frames[:3])
        await stream.append(frames[3])
    _, ome = read_tiff(tmp_path / "v.ome.tiff")
    annotation = next(
        a for a in ome.structured_annotations.map_annotations if a.namespace == "microscope"
    )
    assert {m.k: m.value for m in annotation.value.ms} == {"objective": "20x"}


def test_settings_the_tiff_backend_cannot_honour() -> None:
    with pytest.raises(ValidationError, match="compression 'blosc-zstd' is not supported"):
        AcquisitionSettings(
            root_path="a.ome.tiff",
            dtype="uint8",
            compression="blosc-zstd",
            dimensions=dims_from_standard_axes({"y": 8, "x": 8}),
        )


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np
    from ome_stream import AcquisitionSettings, dims_from_standard_axes, create_stream
    settings = AcquisitionSettings(root_path=sys.argv[1], dtype="uint16",
        dimensions=dims_from_standard_axes({"t": None, "y": 64, "x": 64}))
    with create_stream(settings) as stream:
        for i in range(100000):
            stream.append(np.full((64, 64), i % 60000, "uint16"))
            if i == 20:
                stream.flush()
                print("flushed", flush=True)
            time.sleep(0.002)
""")


def test_killed_writer_leaves_every_finished_page_readable(tmp_path: Path) -> None:
    target = tmp_path / "crash.ome.tiff"
    with subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(target)], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "flushed"
        time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with tifffile.TiffFile(target) as tif:
        assert tif.ome_metadata is None  # never closed: placeholder description
        pages = [page.asarray() for page in tif.pages]
    assert len(pages) >= 21
    for i, page in enumerate(pages):
        np.testing.assert_array_equal(page, np.full((64, 64), i, "uint16"))


def test_update_metadata_after_close_rewrites_the_ome_xml(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.tiff",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 2, "y": 8, "x": 8}),
    )
    frames = make_frames(2, (8, 8), dtype="uint8")
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
    documents = stream.get_metadata()
    assert set(documents) == {0}
    documents[0].images[0].name = "renamed after the run"
    documents[0].images[0].description = "a note added later"
    stream.update_metadata(documents)
    data, ome = read_tiff(tmp_path / "u.ome.tiff")
    np.testing.assert_array_equal(data, frames)
    assert ome.images[0].name == "renamed after the run"
    assert ome.images[0].description == "a note added later"
    with pytest.raises(TypeError, match="must be ome_types.OME"):
        stream.update_metadata({0: "<OME/>"})
