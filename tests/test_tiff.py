"""OME-TIFF: the guide's examples with an .ome.tiff root, read back with tifffile and
ome-types (XML validated against the OME schema), through the async and the sync API."""

from __future__ import annotations

import math
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

from _settings import (
    PIXEL_SIZE,
    SCREEN,
    SITES,
    VISIT_SHAPE,
    Z_STEP,
    field_positions,
    series,
    visit_dims,
    well_index,
)
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)


def read_tiff(path: Path, series: int = 0) -> tuple[np.ndarray, object]:
    """The pixels of image ``series`` and the OME-XML of the file at ``path``.

    In a multi-file acquisition every file describes every image (tifffile then reads
    image ``series`` from the file its TiffData names).
    """
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
        assert xml is not None, "no OME-XML in the first page"
        validate_xml(xml)
        return tif.series[series].asarray(), from_xml(xml)


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
    assert ome.images[0].acquisition_date is not None
    # one TiffData block for the file's pages, in DimensionOrder
    assert [(t.ifd, t.plane_count, t.uuid) for t in pixels.tiff_data_blocks] == [(0, 24, None)]
    assert len(pixels.planes) == 24
    for page, (plane, index) in enumerate(zip(pixels.planes, np.ndindex(*shape), strict=True)):
        at = dict(zip(order[:3], index, strict=True))
        assert (plane.the_t, plane.the_c, plane.the_z) == (at["t"], at["c"], at["z"])
        assert plane.delta_t == page * 0.25 and plane.delta_t_unit.value == "s"
        # ExposureTime is the value given, in seconds (ome-writers' convention)
        assert plane.exposure_time == 5.0 and plane.exposure_time_unit.value == "s"
        assert plane.position_x == 10.0 + page and plane.position_x_unit.value == "µm"
        annotation = next(
            a
            for a in ome.structured_annotations.map_annotations
            if a.id == plane.annotation_refs[0].id
        )
        assert {m.k: m.value for m in annotation.value.ms} == {"laser": "488"}


def test_format_key_without_suffix_and_sync_api(tmp_path: Path) -> None:
    settings = series(tmp_path / "output", 3, (16, 16), dtype="uint8", format="ome-tiff")
    assert settings.output_path == str(tmp_path / "output.ome.tiff")
    frames = make_frames(3, (16, 16), dtype="uint8")
    acquire_sync(settings, frames)
    data, _ = read_tiff(tmp_path / "output.ome.tiff")
    np.testing.assert_array_equal(data, frames)


@pytest.mark.anyio
async def test_multiple_positions_one_file_each(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "dest" / "visits.ome.tiff",
        dimensions=visit_dims((16, 12)),
        dtype="uint16",
    )
    assert settings.output_path == str(tmp_path / "dest" / "visits")
    frames = make_frames(math.prod(VISIT_SHAPE), (16, 12))
    await acquire(settings, frames)
    acquisition = frames.reshape(*VISIT_SHAPE, 16, 12)
    t, n, c, z = VISIT_SHAPE
    names = [f"visits_p{p:03d}.ome.tiff" for p in range(n)]
    uuids = set()
    for p in range(n):
        data, ome = read_tiff(tmp_path / "dest" / "visits" / names[p], series=p)
        np.testing.assert_array_equal(data, acquisition[:, p])
        with tifffile.TiffFile(tmp_path / "dest" / "visits" / names[p]) as tif:
            pages = np.stack([page.asarray() for page in tif.pages])
        np.testing.assert_array_equal(pages, acquisition[:, p].reshape(t * c * z, 16, 12))
        # "redundant": every file describes every position and names their files
        assert [i.name for i in ome.images] == list(SITES)
        assert all(i.pixels.physical_size_z == Z_STEP for i in ome.images)
        assert all(i.pixels.physical_size_x == PIXEL_SIZE for i in ome.images)
        refs = [i.pixels.tiff_data_blocks[0].uuid for i in ome.images]
        assert [r.file_name for r in refs] == names
        assert refs[p].value == ome.uuid
        uuids.add(tuple(r.value for r in refs))
    assert len(uuids) == 1  # all files agree on every file's UUID


def test_plate_metadata(tmp_path: Path) -> None:
    positions = field_positions(3)  # B2 site1, B2 site2, D5 site1
    settings = AcquisitionSettings(
        root_path=tmp_path / "plate.ome.tiff",
        dimensions=[
            Dimension(name="p", type="position", coords=positions),
            *dims_from_standard_axes({"c": 2, "y": 8, "x": 10}),
        ],
        dtype="uint16",
        plate=SCREEN,
    )
    frames = make_frames(6, (8, 10))
    acquire_sync(settings, frames)
    for p in range(len(positions)):
        data, ome = read_tiff(Path(settings.tiff_file_paths()[p]), series=p)
        np.testing.assert_array_equal(data, frames.reshape(3, 2, 8, 10)[p])
        # every file holds the whole plate: each well, each field linked to its image
        plate = ome.plates[0]
        assert plate.name == SCREEN.name and (plate.rows, plate.columns) == (6, 8)
        assert plate.row_naming_convention.value == "letter"
        assert plate.column_naming_convention.value == "number"
        samples = {(w.row, w.column): [s.image_ref.id for s in w.well_samples] for w in plate.wells}
        assert samples == {
            well_index("B", "2"): ["Image:0", "Image:1"],
            well_index("D", "5"): ["Image:2"],
        }
        assert samples.keys() == {(1, 1), (3, 4)}
        assert [i.name for i in ome.images] == ["site1", "site2", "site1"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("compression", "tag"), [("zlib", "ADOBE_DEFLATE"), ("zstd", "ZSTD"), ("lzw", "LZW")]
)
async def test_compression(tmp_path: Path, compression: str, tag: str) -> None:
    settings = series(tmp_path / "c.ome.tiff", 3, (512, 300), compression=compression)
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
        dimensions=dims_from_standard_axes({"t": None, "c": 3, "y": 8, "x": 6}),
    )
    frames = make_frames(7, (8, 6))  # 2 time points and a third begun
    async with open_stream(settings) as stream:
        await stream.append(frames[0])
        await stream.skip()
        for frame in frames[2:]:
            await stream.append(frame)
    data, ome = read_tiff(tmp_path / "u.ome.tiff")
    expected = np.concatenate([frames, np.zeros((2, 8, 6), "uint16")])
    expected[1] = 0
    np.testing.assert_array_equal(data.reshape(9, 8, 6), expected)
    assert ome.images[0].pixels.size_t == 3 and ome.images[0].pixels.size_c == 3

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
    settings = series(tmp_path / "v.ome.tiff", 4, dtype="uint8")
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
    # every value JSON-encoded, strings too (as ome-writers writes them)
    assert {m.k: m.value for m in annotation.value.ms} == {"objective": '"20x"'}


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
    shape = (int(sys.argv[2]), int(sys.argv[3]))
    settings = AcquisitionSettings(root_path=sys.argv[1], dtype="uint16",
        dimensions=dims_from_standard_axes({"t": None, "y": shape[0], "x": shape[1]}))
    with create_stream(settings) as stream:
        for i in range(100000):
            stream.append(np.full(shape, i % 60000, "uint16"))
            if i == 20:
                stream.flush()
                print("flushed", flush=True)
            time.sleep(0.002)
""")


# 64x64: pages written through tifffile; 4 MiB frames: pixels written past the page cache
@pytest.mark.parametrize("shape", [(64, 64), (1024, 2048)])
def test_killed_writer_leaves_every_finished_page_readable(
    tmp_path: Path, shape: tuple[int, int]
) -> None:
    target = tmp_path / "crash.ome.tiff"
    with subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(target), *map(str, shape)],
        stdout=subprocess.PIPE,
        text=True,
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
        np.testing.assert_array_equal(page, np.full(shape, i, "uint16"))


def test_update_metadata_after_close_rewrites_the_ome_xml(tmp_path: Path) -> None:
    settings = series(tmp_path / "u.ome.tiff", 3, (6, 10), dtype="uint8")
    frames = make_frames(3, (6, 10), dtype="uint8")
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
    with pytest.raises(TypeError, match="OME"):
        stream.update_metadata({0: "<OME/>"})
