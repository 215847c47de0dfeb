"""The live view and the coordinate events, as ome-writers 0.3.2 users know them.

Views grow with the acquisition (``dynamic_shape``), report channel and position names
as ``coords``, signal growth, refuse out-of-bounds integers with ``strict``, and keep
reading what was written after the stream closed. Every dataset is also read back with
an independent reader (zarr-python, tifffile) and compared with the view.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import numpy as np
import pytest
import tifffile
import zarr

from conftest import make_frames, read_scratch
from ome_stream import (
    AcquisitionSettings,
    Channel,
    CoordUpdate,
    Dimension,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from ome_stream.backends.base import available_backends


def wait_callbacks(stream) -> None:
    """Return once every callback queued so far has run (they run in order)."""
    executor = stream._callback_executor
    if executor is not None:
        executor.submit(lambda: None).result(timeout=10)


#: the frame of the t, c acquisitions below: 6 rows of 10 pixels
FRAME = (6, 10)


def tc_settings(root: Path, fmt: str = "ome-zarr", **kwargs) -> AcquisitionSettings:
    """3 time points (10 s apart) of 2 channels, DAPI then GFP."""
    suffix = ".ome.tiff" if fmt == "tifffile" else ".ome.zarr"
    return AcquisitionSettings(
        root_path=root / f"tc{suffix}",
        dtype="uint16",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=3, type="time", scale=10, unit="s"),
            Dimension(name="c", type="channel", coords=[Channel(name="DAPI"), Channel(name="GFP")]),
            *dims_from_standard_axes({"y": FRAME[0], "x": FRAME[1]}),
        ],
        **kwargs,
    )


def test_dynamic_shape_coords_and_signal_grow_with_each_new_index(tmp_path: Path) -> None:
    frames = make_frames(6, FRAME)
    emitted = threading.Semaphore(0)
    with create_stream(tc_settings(tmp_path)) as stream:
        view = stream.view()
        assert view.shape == (0, 0, *FRAME)
        assert len(view) == 0
        assert view.coords["c"] == [] and view.coords["t"] == range(0)
        assert view.coords["y"] == range(FRAME[0])
        slot = view.coords_changed.connect(emitted.release)
        expected = [
            ((1, 1), ["DAPI"], True),
            ((1, 2), ["DAPI", "GFP"], True),
            ((2, 2), ["DAPI", "GFP"], True),
            ((2, 2), ["DAPI", "GFP"], False),  # no new index: no signal
            ((3, 2), ["DAPI", "GFP"], True),
        ]
        for frame, (extent, channels, grows) in zip(frames, expected, strict=False):
            stream.append(frame)
            wait_callbacks(stream)
            assert view.shape == (*extent, *FRAME)
            assert view.coords["t"] == range(extent[0])
            assert view.coords["c"] == channels
            assert emitted.acquire(blocking=False) is grows
        # slices cover the live shape; integers beyond it read zeros (not strict)
        so_far = np.zeros((6, *FRAME), "uint16")
        so_far[:5] = frames[:5]
        np.testing.assert_array_equal(view[:], so_far.reshape(3, 2, *FRAME))
        view.coords_changed.disconnect(slot)
        stream.append(frames[5])
        wait_callbacks(stream)
        assert not emitted.acquire(blocking=False)
        with pytest.raises(ValueError, match="without a copy"):
            np.asarray(view, copy=False)
    stored = zarr.open_array(str(tmp_path / "tc.ome.zarr" / "0"), mode="r")[...]
    np.testing.assert_array_equal(np.asarray(view), stored)
    np.testing.assert_array_equal(stored.reshape(6, *FRAME), frames)


@pytest.mark.parametrize(
    ("index", "raises"),
    [((0, 0), False), ((-1, 0), False), ((1, 0), True), ((0, 1), True), ((-2, 0), True)],
)
def test_strict_view_refuses_integers_beyond_the_live_shape(
    tmp_path: Path, index: tuple[int, int], raises: bool
) -> None:
    frame = make_frames(1, FRAME)[0]
    with create_stream(tc_settings(tmp_path)) as stream:
        strict = stream.view(strict=True)
        loose = stream.view()
        stream.append(frame)  # live shape (1, 1, *FRAME)
        if raises:
            name = "t" if index[0] else "c"
            with pytest.raises(IndexError, match=f"out of bounds for live dimension '{name}'"):
                strict[index]
        else:
            np.testing.assert_array_equal(strict[index], frame)
        assert not loose[2, 1].any()  # beyond the live shape, within the acquisition: 0


def test_full_shape_view_and_positions_by_name(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "p.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=2, type="time", unit="s"),
            Dimension(name="p", type="position", coords=["left", "middle", "right"]),
            *dims_from_standard_axes({"y": 4, "x": 4}),
        ],
    )
    frames = make_frames(6, (4, 4), dtype="uint8")
    with create_stream(settings) as stream:
        live = stream.view()
        full = stream.view(dynamic_shape=False)
        assert full.shape == (2, 3, 4, 4)
        assert full.coords["p"] == ["left", "middle", "right"]
        stream.append(frames[0])
        stream.append(frames[1])
        wait_callbacks(stream)
        assert live.coords["p"] == ["left", "middle"]
        assert live.shape == (1, 2, 4, 4)
        assert full.shape == (2, 3, 4, 4)
        for frame in frames[2:]:
            stream.append(frame)
    expected = frames.reshape(2, 3, 4, 4)
    for p, name in enumerate(["left", "middle", "right"]):
        stored = zarr.open_array(str(tmp_path / "p.ome.zarr" / name / "0"), mode="r")[...]
        np.testing.assert_array_equal(stored, expected[:, p])
    np.testing.assert_array_equal(full[:, 1], expected[:, 1])
    assert repr(live).startswith("StreamView(")


@pytest.mark.parametrize("backend", available_backends())
def test_view_after_close_reads_what_was_written(tmp_path: Path, backend: str) -> None:
    settings = tc_settings(tmp_path, backend)
    frames = make_frames(5, FRAME)  # one frame short of the acquisition
    with create_stream(settings) as stream:
        during = stream.view(dynamic_shape=False)
        for frame in frames:
            stream.append(frame)
    after = stream.view(dynamic_shape=False)
    expected = np.zeros((6, *FRAME), "uint16")
    expected[:5] = frames
    expected = expected.reshape(3, 2, *FRAME)
    if backend == "tifffile":
        stored = tifffile.imread(tmp_path / "tc.ome.tiff").reshape(3, 2, *FRAME)
    elif backend == "scratch":
        stored = read_scratch(tmp_path / "tc.ome.zarr")
    else:
        stored = zarr.open_array(str(tmp_path / "tc.ome.zarr" / "0"), mode="r")[...]
    np.testing.assert_array_equal(stored, expected)
    for view in (during, after):
        assert view.shape == (3, 2, *FRAME)
        np.testing.assert_array_equal(np.asarray(view), expected)
        np.testing.assert_array_equal(view[-1, 0], frames[4])
    assert stream.view().shape == (3, 2, *FRAME)  # dynamic: everything acquired


def test_unbounded_view_grows_with_appends_and_skips(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.zarr",
        dtype="uint16",
        dimensions=dims_from_standard_axes({"t": None, "c": 3, "y": 8, "x": 8}),
    )
    frames = make_frames(3, (8, 8))
    with create_stream(settings) as stream:
        view = stream.view()
        stream.skip(1)  # t=0, c=0
        assert view.shape == (1, 1, 8, 8)
        stream.append(frames[0])  # t=0, c=1
        assert view.shape == (1, 2, 8, 8)
        stream.skip(frames=3)  # t=0 c=2, t=1 c=0, t=1 c=1
        assert view.shape == (2, 3, 8, 8)
        stream.append(frames[1])  # t=1, c=2
        stream.append(frames[2])  # t=2, c=0
        assert view.shape == (3, 3, 8, 8)
        assert view.coords["t"] == range(3)
        assert stream.view(dynamic_shape=False).shape == (3, 3, 8, 8)
    stored = zarr.open_array(str(tmp_path / "u.ome.zarr" / "0"), mode="r")[...]
    assert stored.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(stored[0, 1], frames[0])
    np.testing.assert_array_equal(stored[1, 2], frames[1])
    np.testing.assert_array_equal(stored[2, 0], frames[2])
    written = {(0, 1), (1, 2), (2, 0)}
    for t, c in np.ndindex(3, 3):
        assert (t, c) in written or not stored[t, c].any(), (t, c)
    np.testing.assert_array_equal(np.asarray(view), stored)


def test_coordinate_callbacks(tmp_path: Path) -> None:
    frames = make_frames(6, FRAME)
    expanded: list[CoordUpdate] = []
    changed: list[CoordUpdate] = []
    with create_stream(tc_settings(tmp_path)) as stream:
        stream.append(frames[0])
        stream.append(frames[1])
        stream.append(frames[2])  # t=1, c=0: registered from here on
        stream.on("coords_expanded", expanded.append)
        stream.on("coords_changed", changed.append)
        with pytest.raises(ValueError, match="unknown event kind"):
            stream.on("coords_moved", print)  # type: ignore[arg-type]
        stream.append(frames[3])  # t=1, c=1: no new index
        wait_callbacks(stream)
        assert (len(expanded), len(changed)) == (0, 1)
        update = changed[0]
        assert update.frame_number == 3
        assert not update.is_high_water_mark
        assert dict(update.current_indices) == {"t": 1, "c": 1, "y": 0, "x": 0}
        assert update.max_coords["t"] == range(2)
        assert update.max_coords["c"] == ["DAPI", "GFP"]
        stream.skip(frames=2)  # t=2: a new index, told once for the whole skip
        wait_callbacks(stream)
        assert (len(expanded), len(changed)) == (1, 2)
        assert expanded[0] == changed[1]
        assert expanded[0].frame_number == 5
        assert expanded[0].is_high_water_mark
        assert expanded[0].max_coords["t"] == range(3)
    data = zarr.open_array(str(tmp_path / "tc.ome.zarr" / "0"), mode="r")[...]
    np.testing.assert_array_equal(data.reshape(6, *FRAME)[:4], frames[:4])
    assert not data[2].any()


def test_private_progress_names_ome_writers_tests_read(tmp_path: Path) -> None:
    # ome-writers' own tests look at _frames_written, _event_handlers and _coord_tracker
    frames = make_frames(5, FRAME)
    names = ("_frames_written", "_event_handlers", "_coord_tracker")

    def progress(stream) -> dict:
        return {name: getattr(stream, name) for name in names}

    with create_stream(tc_settings(tmp_path)) as stream:
        assert progress(stream) == dict(zip(names, (0, {}, None), strict=True))
        stream.append(frames[0])
        stream.skip()
        stream.append(frames[2])
        stream.on("frames_written", print)
        # a frames_written callback counts, but only coordinate callbacks make a tracker
        assert progress(stream) == dict(
            zip(names, (3, {"frames_written": [print]}, None), strict=True)
        )
        stream.on("coords_changed", print)
        assert progress(stream)["_event_handlers"]["coords_changed"] == [print]
        tracker = progress(stream)["_coord_tracker"]
        assert tracker is not None  # made by the coordinate callback, caught up with the stream
        coords = tracker.get_coords()
        seen = (tracker._frames_written, coords["t"], coords["c"], coords["y"])
        assert seen == (3, range(2), ["DAPI", "GFP"], range(FRAME[0]))
        for frame in frames[3:]:
            stream.append(frame)
        assert stream._coord_tracker.get_coords()["t"] == range(3)  # kept up to date
    data = zarr.open_array(str(tmp_path / "tc.ome.zarr" / "0"), mode="r")[...]
    np.testing.assert_array_equal(data.reshape(6, *FRAME)[[0, 2, 3, 4]], frames[[0, 2, 3, 4]])
    assert not data[0, 1].any()


@pytest.mark.anyio
async def test_async_view_callbacks_and_close_alias(tmp_path: Path) -> None:
    frames = make_frames(6, FRAME)
    updates: list[CoordUpdate] = []
    done = threading.Event()
    stream = open_stream(tc_settings(tmp_path))
    async with stream:
        stream.on("coords_changed", updates.append)
        stream.on("closed", lambda event: done.set())
        view = stream.view()
        for frame in frames[:3]:
            await stream.append(frame)
        assert view.shape == (2, 2, *FRAME)
        np.testing.assert_array_equal(await view.read((1, 0)), frames[2])
        with pytest.raises(RuntimeError, match="await view.read"):
            view[0, 0]
        for frame in frames[3:]:
            await stream.append(frame)
        await stream.close()
        assert stream.closed
    assert await anyio.to_thread.run_sync(done.wait, 10)
    assert [u.frame_number for u in updates] == list(range(6))
    stored = zarr.open_array(str(tmp_path / "tc.ome.zarr" / "0"), mode="r")[...]
    np.testing.assert_array_equal(await view.read(), stored)
    np.testing.assert_array_equal(stored.reshape(6, *FRAME), frames)


def test_views_of_a_compressed_tiff_live_and_after_close(tmp_path: Path) -> None:
    settings = tc_settings(tmp_path, "tifffile", compression="zlib")
    frames = make_frames(6, FRAME)
    with create_stream(settings) as stream:
        view = stream.view(dynamic_shape=False)
        for frame in frames[:4]:
            stream.append(frame)
        stream.flush()
        np.testing.assert_array_equal(view[1, 1], frames[3])  # read back from the file
        for frame in frames[4:]:
            stream.append(frame)
    with tifffile.TiffFile(tmp_path / "tc.ome.tiff") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        stored = tif.asarray().reshape(3, 2, *FRAME)
    np.testing.assert_array_equal(stored.reshape(6, *FRAME), frames)
    np.testing.assert_array_equal(np.asarray(stream.view()), stored)


def test_out_of_range_position_is_named_in_the_index_error(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "pos.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="p", type="position", coords=["a", "b"]),
            *dims_from_standard_axes({"t": 2, "y": 4, "x": 4}),
        ],
    )
    frames = make_frames(4, (4, 4), dtype="uint8")
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
        view = stream.view(dynamic_shape=False)
        for bad in (2, -3):
            with pytest.raises(IndexError, match=f"Position index {bad} is out of bounds"):
                view[bad, 0]
        with pytest.raises(IndexError, match=r"^index 2 is out of bounds for axis 1"):
            view[0, 2]
        np.testing.assert_array_equal(view[-1, 1], frames[3])
    stored = zarr.open_array(str(tmp_path / "pos.ome.zarr" / "b" / "0"), mode="r")[...]
    np.testing.assert_array_equal(stored, frames[2:])
