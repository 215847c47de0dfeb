"""The acquire-zarr backend: the zarr scenarios it can carry, read back with zarr-python
and tensorstore; the rest rejected up front with a useful message."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import acquire_zarr as az
import anyio
import anyio.lowlevel
import numpy as np
import pytest
import tensorstore as ts
import zarr
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image
from pydantic import ValidationError

from _settings import SITES, series
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    Pyramid,
    available_backends,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from ome_stream.backends.acquire_zarr import _Feeder, _stream_settings
from ome_stream.errors import WriterError
from ome_stream.layout import Layout

pytestmark = pytest.mark.skipif(
    "acquire-zarr" not in available_backends(),
    reason="acquire-zarr is not installed: pip install 'ome-stream[acquire-zarr]'",
)


#: three channels of a fluorescence acquisition, in the order they are taken
CHANNELS = Dimension(name="c", type="channel", coords=["DAPI", "GFP", "Cy5"])


def on_acquire_zarr(
    root: Path, dimensions: list, dtype: str = "uint16", **kwargs: Any
) -> AcquisitionSettings:
    """Settings that write ``dimensions`` at ``root`` with the acquire-zarr backend."""
    return AcquisitionSettings(
        root_path=root, format="acquire-zarr", dtype=dtype, dimensions=dimensions, **kwargs
    )


async def acquire_skipping(
    settings: AcquisitionSettings,
    frames: np.ndarray,
    skipped: set[int],
    opened: Callable[[Any], object] = lambda stream: None,
) -> np.ndarray:
    """Append ``frames`` in order but skip those numbered in ``skipped``; return what the
    dataset must hold, in acquisition order (the skipped frames read 0). ``opened`` sees the
    stream once it is open."""
    async with open_stream(settings) as stream:
        opened(stream)
        for i, frame in enumerate(frames):
            if i in skipped:
                await stream.skip()
            else:
                await stream.append(frame)
    expected = frames.copy()
    expected[sorted(skipped)] = 0
    return expected


def read_both(path: Path) -> np.ndarray:
    by_zarr = np.asarray(zarr.open_array(str(path), mode="r")[...])
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    np.testing.assert_array_equal(ts.open(spec).result().read().result(), by_zarr)
    return by_zarr


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [None, "blosc-zstd", "blosc-lz4"])
async def test_single_image(tmp_path: Path, compression: str | None) -> None:
    settings = on_acquire_zarr(
        tmp_path / "a.ome.zarr",
        [
            Dimension(name="t", count=4, chunk_size=2, shard_size_chunks=2),
            CHANNELS,
            Dimension(name="y", count=48, chunk_size=16, unit="um", scale=0.2),
            Dimension(name="x", count=32, chunk_size=16, unit="um", scale=0.2),
        ],
        compression=compression,
    )
    frames = make_frames(12, (48, 32))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    root = tmp_path / "a.ome.zarr"
    np.testing.assert_array_equal(read_both(root / "0"), frames.reshape(4, 3, 48, 32))
    meta = json.loads((root / "0" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["t", "c", "y", "x"]
    if compression:
        codecs = json.dumps(meta["codecs"])
        assert compression.removeprefix("blosc-") in codecs
        # the peers' levels (ome-writers 0.3.2): zstd 3, lz4 5
        assert f'"clevel": {3 if compression == "blosc-zstd" else 5}' in codecs
    image = Image.from_zarr(zarr.open_group(str(root), mode="r"))
    assert [a.name for a in image.ome_attributes.multiscales[0].axes] == ["t", "c", "y", "x"]


def test_multi_position_unbounded_with_skips_sync(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "m.ome.zarr",
        format={"name": "ome-zarr", "backend": "acquire-zarr"},
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=None, type="time", unit="s"),
            Dimension(name="p", type="position", coords=list(SITES)),
            *dims_from_standard_axes({"y": 16, "x": 10}),
        ],
    )
    frames = make_frames(7, (16, 10), dtype="uint8")  # 2 time points and a third begun
    with create_stream(settings) as stream:
        for i, frame in enumerate(frames):
            if i == 2:
                stream.skip()
            else:
                stream.append(frame)
    root = tmp_path / "m.ome.zarr"
    expected = frames.copy()
    expected[2] = 0
    expected = np.concatenate([expected, np.zeros((2, 16, 10), "uint8")]).reshape(3, 3, 16, 10)
    for p, name in enumerate(SITES):
        np.testing.assert_array_equal(read_both(root / name / "0"), expected[:, p])
    BioFormats2Raw.from_zarr(zarr.open_group(str(root), mode="r"))


def test_what_acquire_zarr_cannot_do_is_rejected_up_front() -> None:
    dims = dims_from_standard_axes({"t": 2, "z": 3, "c": 2, "y": 8, "x": 8})
    with pytest.raises(
        ValidationError, match="compression 'zstd' is not supported by the 'acquire-zarr' backend"
    ):
        on_acquire_zarr(Path("a.ome.zarr"), dims, compression="zstd")
    with pytest.raises(ValidationError, match="cannot write multiscale levels"):
        on_acquire_zarr(Path("a.ome.zarr"), dims, pyramid=Pyramid(levels=3))


@pytest.mark.anyio
async def test_storage_order_ome_with_positions_unbounded_and_skips(tmp_path: Path) -> None:
    """Acquired t, p, z, c and stored t, c, z: every frame at its storage index."""
    settings = on_acquire_zarr(
        tmp_path / "o.ome.zarr",
        [
            Dimension(name="t", count=None, chunk_size=1, shard_size_chunks=2, type="time"),
            Dimension(name="p", type="position", coords=["A", "B"]),
            Dimension(name="z", count=4, chunk_size=2, shard_size_chunks=2, type="space"),
            CHANNELS,
            *dims_from_standard_axes({"y": 16, "x": 12}),
        ],
        storage_order="ome",
    )
    assert settings.storage_index_permutation is not None
    frames = make_frames(3 * 2 * 4 * 3, (16, 12))
    expected = await acquire_skipping(settings, frames, skipped={1, 30, 71})
    acquired = expected.reshape(3, 2, 4, 3, 16, 12)
    root = tmp_path / "o.ome.zarr"
    for p, name in enumerate(["A", "B"]):
        stored = np.transpose(acquired[:, p], (0, 2, 1, 3, 4))  # t, z, c -> t, c, z
        np.testing.assert_array_equal(read_both(root / name / "0"), stored)
        meta = json.loads((root / name / "0" / "zarr.json").read_text())
        assert meta["dimension_names"] == ["t", "c", "z", "y", "x"]
    image = Image.from_zarr(zarr.open_group(str(root / "A"), mode="r"))
    axes = image.ome_attributes.multiscales[0].axes
    assert [a.name for a in axes] == ["t", "c", "z", "y", "x"]


def test_storage_order_list_keeps_chunks_per_dimension_sync(tmp_path: Path) -> None:
    """An explicit order with uneven chunks and shards: chunks follow their dimension."""
    settings = on_acquire_zarr(
        tmp_path / "l.ome.zarr",
        [
            Dimension(name="t", count=2, type="time", scale=60, unit="s"),
            Dimension(name="c", count=2, chunk_size=2, type="channel"),
            Dimension(name="z", count=6, chunk_size=3, shard_size_chunks=2, type="space"),
            *dims_from_standard_axes({"y": 8, "x": 8}),
        ],
        "uint8",
        storage_order=["t", "z", "c", "y", "x"],
    )
    frames = make_frames(2 * 2 * 6, (8, 8)).astype("uint8")
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
    array = tmp_path / "l.ome.zarr" / "0"
    stored = np.transpose(frames.reshape(2, 2, 6, 8, 8), (0, 2, 1, 3, 4))
    np.testing.assert_array_equal(read_both(array), stored)
    opened = zarr.open_array(str(array), mode="r")
    assert opened.chunks == (1, 3, 2, 8, 8)
    assert opened.shards == (1, 6, 2, 8, 8)


def channel_first(tmp_path: Path, dimensions: list, **kwargs: Any) -> AcquisitionSettings:
    """Acquired c, t (and maybe positions), stored t, c: acquire-zarr's first axis moves."""
    return on_acquire_zarr(tmp_path / "h.ome.zarr", dimensions, storage_order="ome", **kwargs)


@pytest.mark.anyio
async def test_order_moving_the_first_dimension_holds_frames(tmp_path: Path) -> None:
    """c, t stored t, c: frames wait until their predecessors in storage order arrive.

    More frames wait (38 per position) than the stream keeps in flight (32).
    """
    from ome_stream.backends.acquire_zarr import frames_held

    settings = channel_first(
        tmp_path,
        [
            CHANNELS,
            Dimension(name="p", type="position", coords=["A", "B"]),
            Dimension(name="t", count=20, chunk_size=2, type="time"),
            *dims_from_standard_axes({"y": 8, "x": 6}),
        ],
    )
    assert [d.name for d in settings.storage_index_dimensions] == ["t", "c"]
    # per position, the worst moment holds c0 and c1 at t1..t19
    assert frames_held(Layout(settings)) == 2 * 38
    frames = make_frames(3 * 2 * 20, (8, 6))
    expected = await acquire_skipping(settings, frames, skipped={9, 100})
    acquired = expected.reshape(3, 2, 20, 8, 6)
    for p, name in enumerate(["A", "B"]):
        stored = np.transpose(acquired[:, p], (1, 0, 2, 3))  # c, t -> t, c
        array = tmp_path / "h.ome.zarr" / name / "0"
        np.testing.assert_array_equal(read_both(array), stored)
        assert json.loads((array / "zarr.json").read_text())["dimension_names"] == [
            "t",
            "c",
            "y",
            "x",
        ]


@pytest.mark.anyio
async def test_frames_held_beyond_the_buffer_budget_are_refused_at_open(
    tmp_path: Path,
) -> None:
    """The held frames must fit max_buffer_bytes: at the limit it opens, one byte less not."""
    dims = [
        CHANNELS,
        Dimension(name="t", count=4, type="time"),
        *dims_from_standard_axes({"y": 8, "x": 8}),
    ]
    held_bytes = 6 * 8 * 8 * 2  # (c - 1) * (t - 1) frames of uint16
    fits = channel_first(tmp_path, dims, max_buffer_bytes=held_bytes)
    frames = make_frames(12, (8, 8))
    async with open_stream(fits) as stream:
        for frame in frames:
            await stream.append(frame)
    stored = np.transpose(frames.reshape(3, 4, 8, 8), (1, 0, 2, 3))
    np.testing.assert_array_equal(read_both(tmp_path / "h.ome.zarr" / "0"), stored)

    refused = channel_first(tmp_path / "x", dims, max_buffer_bytes=held_bytes - 1)
    with pytest.raises(
        ValueError,
        match=r"hold up to 6 frames \(768 bytes\).*max_buffer_bytes=767\. Store them as "
        r"\['c', 't'\]",
    ):
        async with open_stream(refused):
            pass
    assert not (tmp_path / "x").exists()


@pytest.mark.anyio
async def test_many_frames_in_flight_land_in_sequence(tmp_path: Path) -> None:
    """Frames in flight together, shards along t, skips anywhere: all in their place."""
    settings = on_acquire_zarr(
        tmp_path / "s.ome.zarr",
        [
            Dimension(name="t", count=None, chunk_size=1, shard_size_chunks=8, type="time"),
            Dimension(name="p", type="position", coords=["A", "B"]),
            *dims_from_standard_axes({"y": 24, "x": 20}),
        ],
    )
    frames = make_frames(150, (24, 20))
    inflight: list[int] = []
    expected = await acquire_skipping(
        settings,
        frames,
        skipped={0, 5, 6, 77, 149},
        opened=lambda s: inflight.append(s.max_inflight),
    )
    assert inflight[0] > 1  # several frames queued for acquire-zarr at once
    expected = expected.reshape(75, 2, 24, 20)
    root = tmp_path / "s.ome.zarr"
    for p, name in enumerate(["A", "B"]):
        np.testing.assert_array_equal(read_both(root / name / "0"), expected[:, p])


@pytest.mark.anyio
async def test_reused_buffers_are_appended_before_they_are_reused(tmp_path: Path) -> None:
    """A frame's buffer slot returns to the stream only once acquire-zarr has copied it.

    Four frames of budget: the stream's copies cycle through a few slots hundreds of
    times, so a frame released before its ``append`` ran would be overwritten by a later
    one and read back wrong. Two positions, so the feeding thread interleaves arrays.
    """
    frame_bytes = 40 * 36 * 2
    settings = on_acquire_zarr(
        tmp_path / "r.ome.zarr",
        [
            Dimension(name="t", count=200, chunk_size=1, shard_size_chunks=16, type="time"),
            Dimension(name="p", type="position", coords=["A", "B"]),
            *dims_from_standard_axes({"y": 40, "x": 36}),
        ],
        max_buffer_bytes=4 * frame_bytes,
    )
    frames = make_frames(400, (40, 36))
    buffer = np.empty((40, 36), "uint16")
    async with open_stream(settings) as stream:
        assert feeding_threads() == 1
        for frame in frames:
            buffer[...] = frame  # the camera's one buffer, copied by append
            await stream.append(buffer)
        buffer[...] = 0
    root = tmp_path / "r.ome.zarr"
    expected = frames.reshape(200, 2, 40, 36)
    for p, name in enumerate(["A", "B"]):
        np.testing.assert_array_equal(read_both(root / name / "0"), expected[:, p])
    assert feeding_threads() == 0  # it ended with the stream


def feeding_threads() -> int:
    """The threads feeding acquire-zarr streams that are alive."""
    return sum(t.name.startswith("ome-stream acquire-zarr") for t in threading.enumerate())


@pytest.mark.anyio
async def test_open_failure_is_a_writer_error(tmp_path: Path) -> None:
    settings = on_acquire_zarr(
        tmp_path / "long.ome.zarr",
        [  # a series group whose name is longer than a file name may be
            Dimension(name="p", type="position", coords=["A" * 300, "B"]),
            *dims_from_standard_axes({"t": 2, "y": 8, "x": 8}),
        ],
        "uint8",
    )
    with pytest.raises(WriterError, match="cannot create .*long.ome.zarr"):
        async with open_stream(settings):
            pass


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.anyio
async def test_cancelling_while_opening_leaks_no_thread(tmp_path: Path) -> None:
    """Cancelled the moment the dataset appears on disk (mid-open): no thread is left."""
    dims = dims_from_standard_axes({"t": 4, "y": 64, "x": 64})
    cancelled_in_open = 0
    before = native_threads()
    for i in range(12):
        root = tmp_path / f"c{i}.ome.zarr"
        settings = on_acquire_zarr(root, dims)
        entered = False
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_when_created(root: Path = root) -> None:
                    while not root.exists():
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                tg.start_soon(cancel_when_created)
                async with open_stream(settings) as stream:
                    entered = True
                    await stream.append(np.ones((64, 64), "uint16"))
                    await anyio.sleep(5)  # cancelled here when the open was not
        cancelled_in_open += not entered
    await anyio.sleep(0.2)
    assert cancelled_in_open  # the scenario happened at least once
    assert native_threads() - before < 4  # 12 leaked backends would show


@pytest.mark.anyio
async def test_flush_says_acquire_zarr_cannot_flush(tmp_path: Path) -> None:
    settings = series(tmp_path / "f.ome.zarr", 3, dtype="uint8", format="acquire-zarr")
    async with open_stream(settings) as stream:
        await stream.append(np.full((8, 8), 7, "uint8"))
        with pytest.raises(NotImplementedError, match="cannot flush"):
            await stream.flush()
        await stream.append(np.full((8, 8), 8, "uint8"))
    data = read_both(tmp_path / "f.ome.zarr" / "0")
    assert data[0].min() == 7 and data[1].min() == 8  # nothing lost by the refusal


class HeldStream:
    """acquire-zarr's real stream, whose first ``append`` waits until ``release`` is set;
    it records how many frames each call carried."""

    def __init__(self, stream: az.ZarrStream) -> None:
        self.stream = stream
        self.entered, self.release = threading.Event(), threading.Event()
        self.frames_per_call: list[int] = []

    def append(self, data: np.ndarray, key: str) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        self.frames_per_call.append(1 if data.ndim == 2 else data.shape[0])
        self.stream.append(data, key=key)


def held_feeder(root: Path, dims: list[Dimension]) -> tuple[_Feeder, HeldStream]:
    """A feeding thread on a real acquire-zarr stream at ``root``, its first append held."""
    layout = Layout(on_acquire_zarr(root, dims))
    native = HeldStream(az.ZarrStream(_stream_settings(layout)))
    feeder = _Feeder(native, root, layout.frame_shape, layout.dtype)  # type: ignore[arg-type]
    return feeder, native


def test_frames_that_wait_are_appended_together_per_array(tmp_path: Path) -> None:
    """While the first append is held, 39 frames of two arrays queue up behind it: they
    go in as few calls as the batch size allows, never mixing arrays, each landing in its
    place (the staging buffer is reused between calls), and every future resolves."""
    root = tmp_path / "b.ome.zarr"
    dims = [
        Dimension(name="p", type="position", coords=["A", "B"]),
        Dimension(name="t", count=20, chunk_size=1, shard_size_chunks=8, type="time"),
        *dims_from_standard_axes({"y": 32, "x": 24}),
    ]
    feeder, native = held_feeder(root, dims)
    frames = make_frames(40, (32, 24))
    done = [Future[None]() for _ in frames]
    feeder.append("A/0", frames[0], done[0])
    assert native.entered.wait(10)
    for i in range(1, 40):  # positions outermost: all of A, then all of B
        feeder.append("A/0" if i < 20 else "B/0", frames[i], done[i])
    native.release.set()
    feeder.stop()
    native.stream.close()
    assert native.frames_per_call == [1, 16, 3, 16, 4]
    assert all(f.result(timeout=0) is None for f in done)
    np.testing.assert_array_equal(read_both(root / "A" / "0"), frames[:20])
    np.testing.assert_array_equal(read_both(root / "B" / "0"), frames[20:])


def test_a_failed_append_fails_its_batch_and_everything_after(tmp_path: Path) -> None:
    """A call that acquire-zarr refuses (here: an array it does not have) fails the
    futures of all its frames and of every later one, which are not appended; the frames
    before it stay appended and resolved."""
    root = tmp_path / "f.ome.zarr"
    dims = [
        Dimension(name="t", count=None, chunk_size=1, type="time"),
        *dims_from_standard_axes({"y": 16, "x": 16}),
    ]
    feeder, native = held_feeder(root, dims)
    frames = make_frames(12, (16, 16))
    done = [Future[None]() for _ in frames]
    feeder.append("0", frames[0], done[0])
    assert native.entered.wait(10)
    for i in range(1, 12):
        feeder.append("0" if i < 4 or i >= 7 else "missing", frames[i], done[i])
    native.release.set()
    feeder.stop()
    native.stream.close()
    assert native.frames_per_call == [1, 3, 3]  # nothing after the refused call
    assert [f.exception(timeout=0) is None for f in done] == [True] * 4 + [False] * 8
    with pytest.raises(WriterError, match="failed writing .*f.ome.zarr.*'missing' not found"):
        done[-1].result(timeout=0)
    np.testing.assert_array_equal(read_both(root / "0"), frames[:4])
