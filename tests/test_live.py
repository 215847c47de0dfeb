"""Live data during acquisition: the view and the progress events."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import numpy as np
import pytest
import zarr

from _settings import series
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    CoordUpdate,
    Dimension,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from ome_stream.events import StreamEvent


def read_acquisition_order(root: Path, n_t: int) -> np.ndarray:
    """Final on-disk data of the test acquisition, rearranged into acquisition order."""
    arrays = [zarr.open_array(str(root / p / "0"), mode="r")[...] for p in ("a", "b")]
    # storage is (t, c, z, y, x) per position; acquisition is (t, p, z, c, y, x)
    stacked = np.stack(arrays, axis=1)  # t, p, c, z, y, x
    return stacked.transpose(0, 1, 3, 2, 4, 5)[:n_t]


@pytest.mark.anyio
async def test_view_and_events_match_what_is_finally_on_disk(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "live.ome.zarr",
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=None, chunk_size=2, type="time"),
            Dimension(name="p", type="position", coords=["a", "b"]),
            Dimension(name="z", count=3, chunk_size=3),
            Dimension(name="c", type="channel", coords=["GFP", "mCherry"], chunk_size=1),
            *dims_from_standard_axes({"y": 8, "x": 8}),
        ],
    )
    n_t = 3
    frames = make_frames(n_t * 12, (8, 8))
    seen: list[tuple[int, int, int, int, np.ndarray]] = []  # (t, p, z, c, pixels) mid-run
    events: list[StreamEvent] = []

    async with open_stream(settings) as stream:
        view = stream.view()
        subscription = stream.events()

        async def follow_events() -> None:
            async with subscription:
                async for event in subscription:
                    events.append(event)

        async def watch() -> None:
            while not stream.closed and stream.stats.frames_accepted < len(frames):
                shape = view.shape
                if shape[0]:
                    t = shape[0] - 1
                    plane = await view.read((t, 1, 2, 1))
                    seen.append((t, 1, 2, 1, plane))
                    whole = await view.read()
                    assert whole.shape == shape
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow_events)
            tg.start_soon(watch)
            for frame in frames:
                await stream.append(frame)
                await anyio.lowlevel.checkpoint()
            await stream.aclose()

    final = read_acquisition_order(tmp_path / "live.ome.zarr", n_t)
    assert final.shape == (n_t, 2, 3, 2, 8, 8)
    np.testing.assert_array_equal(final.reshape(-1, 8, 8), frames)
    assert seen, "the watcher saw nothing"
    for t, p, z, c, plane in seen:
        # before acquisition reached it, a slot reads 0; otherwise the final pixels
        assert (plane == final[t, p, z, c]).all() or not plane.any()
    kinds = [e.kind for e in events]
    assert kinds[-1] == "closed"
    assert events[-1].frames_written == len(frames)
    highs = [e.high_water for e in events if e.kind == "coords_expanded"]
    assert highs[0] == {"t": 1, "p": 1, "z": 1, "c": 1}
    assert highs[-1] == {"t": 3, "p": 2, "z": 3, "c": 2}
    assert [h["t"] for h in highs] == sorted(h["t"] for h in highs)


@pytest.mark.anyio
async def test_view_indexing(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "v.ome.zarr",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 4, "c": 2, "y": 6, "x": 5}),
    )
    frames = make_frames(8, (6, 5), dtype="uint8")
    expected = frames.reshape(4, 2, 6, 5)
    async with open_stream(settings) as stream:
        view = stream.view(dynamic_shape=False)
        for frame in frames[:5]:
            await stream.append(frame)
        partial = expected.copy()
        partial[2, 1:] = 0
        partial[3:] = 0
        np.testing.assert_array_equal(await view.read(), partial)
        await stream.flush()
        np.testing.assert_array_equal(
            await view.read((slice(1, 3), 0, ..., slice(None, None, 2))), partial[1:3, 0, :, ::2]
        )
        np.testing.assert_array_equal(await view.read((-2, ...)), partial[-2])
        with pytest.raises(IndexError, match="index 4 is out of bounds for axis 0"):
            await view.read(4)
        with pytest.raises(TypeError, match="ints, slices"):
            await view.read([0, 1])
        with pytest.raises(RuntimeError, match="await view.read"):
            view[0]
        for frame in frames[5:]:
            await stream.append(frame)
        np.testing.assert_array_equal(await view.read(), expected)


def test_sync_view_and_callbacks(tmp_path: Path) -> None:
    settings = series(tmp_path / "s.ome.zarr", 5)
    frames = make_frames(5, (8, 8))
    expansions: list[CoordUpdate] = []
    closed = threading.Event()
    with create_stream(settings) as stream:
        stream.on("coords_expanded", expansions.append)
        stream.on("closed", lambda event: closed.set())
        with pytest.raises(ValueError, match="unknown event kind"):
            stream.on("nope", print)  # type: ignore[arg-type]
        view = stream.view()
        for i, frame in enumerate(frames):
            stream.append(frame)
            np.testing.assert_array_equal(view[i], frame)  # from a thread: served by the loop
        np.testing.assert_array_equal(np.asarray(view), frames)
    assert closed.wait(5)
    assert [u.max_coords["t"] for u in expansions] == [range(i) for i in range(1, 6)]
    assert [u.frame_number for u in expansions] == list(range(5))
    assert all(u.is_high_water_mark for u in expansions)
