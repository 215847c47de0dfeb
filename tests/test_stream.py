"""The async core and the sync facade, on the default OME-Zarr backend (tensorstore).

Every test reads what was written back with zarr-python and tensorstore and compares it
with the frames in acquisition order.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import numpy as np
import pytest
import tensorstore as ts
import zarr

from _settings import SITES, VISIT_SHAPE, series, visit_dims
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    WriterError,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)


def read_zarr(path: Path | str) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path), mode="r")[...])


def read_ts(path: Path | str) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    return ts.open(spec, read=True).result().read().result()


def expected_storage(frames: np.ndarray, acq_shape: tuple[int, ...], perm: tuple[int, ...]):
    """Frames in acquisition order → the storage-order array."""
    full = frames.reshape(*acq_shape, *frames.shape[-2:])
    return full.transpose(*perm, len(acq_shape), len(acq_shape) + 1)


def five_d(root: Path, order: str = "tczyx", **kwargs) -> AcquisitionSettings:
    counts = {"t": 2, "c": 3, "z": 4}
    dims = [Dimension(name=n, count=counts[n], chunk_size=2 if n == "z" else 1) for n in order[:3]]
    dims += [
        Dimension(name="y", count=32, chunk_size=16, unit="um", scale=0.1),
        Dimension(name="x", count=48, chunk_size=16, unit="um", scale=0.1),
    ]
    return AcquisitionSettings(
        root_path=root / "five.ome.zarr", dimensions=dims, dtype="uint16", **kwargs
    )


# ---------------------------------------------------------------- round trips
@pytest.mark.anyio
@pytest.mark.parametrize("order", ["tczyx", "tzcyx", "ctzyx"])
async def test_single_5d_async(tmp_path: Path, order: str) -> None:
    settings = five_d(tmp_path, order)
    frames = make_frames(24, (32, 48))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    names = order[:3]
    perm = tuple(names.index(n) for n in "tcz")  # NGFF storage order is t, c, z
    acq_shape = tuple({"t": 2, "c": 3, "z": 4}[n] for n in names)
    expected = expected_storage(frames, acq_shape, perm)
    array_path = tmp_path / "five.ome.zarr" / "0"
    np.testing.assert_array_equal(read_zarr(array_path), expected)
    np.testing.assert_array_equal(read_ts(array_path), expected)
    array = zarr.open_array(str(array_path), mode="r")
    assert array.metadata.dimension_names == ("t", "c", "z", "y", "x")
    assert array.chunks == (1, 1, 2, 16, 16)
    attrs = json.loads((tmp_path / "five.ome.zarr" / "zarr.json").read_text())["attributes"]
    multiscale = attrs["ome"]["multiscales"][0]
    assert attrs["ome"]["version"] == "0.5"
    assert [a["name"] for a in multiscale["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a.get("type") for a in multiscale["axes"]] == [
        "time",
        "channel",
        "space",
        "space",
        "space",
    ]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [1.0, 1.0, 1.0, 0.1, 0.1]


def test_single_5d_sync_matches_async_layout(tmp_path: Path) -> None:
    settings = five_d(tmp_path, "tzcyx")
    frames = make_frames(24, (32, 48), seed=3)
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
    expected = expected_storage(frames, (2, 4, 3), (0, 2, 1))
    np.testing.assert_array_equal(read_zarr(tmp_path / "five.ome.zarr" / "0"), expected)
    assert stream.closed


def test_basic_pattern_guide_example(tmp_path: Path) -> None:
    """The guide's Basic Pattern: chunked camera-sized frames (a 1024 x 768 sensor)."""
    settings = AcquisitionSettings(
        root_path=tmp_path / "example.ome.zarr",
        dimensions=[
            Dimension(name="t", count=3, chunk_size=1, type="time", unit="s"),
            Dimension(name="c", type="channel", coords=["DAPI", "GFP"]),
            Dimension(name="z", count=3, chunk_size=3, type="space", unit="um"),
            Dimension(name="y", count=1024, chunk_size=256, type="space", unit="um"),
            Dimension(name="x", count=768, chunk_size=256, type="space", unit="um"),
        ],
        dtype="uint16",
    )
    frames = make_frames(18, (1024, 768), seed=1)
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
    array = zarr.open_array(str(tmp_path / "example.ome.zarr" / "0"), mode="r")
    assert array.chunks == (1, 1, 3, 256, 256)
    expected = frames.reshape(3, 2, 3, 1024, 768)
    np.testing.assert_array_equal(read_ts(tmp_path / "example.ome.zarr" / "0"), expected)


@pytest.mark.anyio
async def test_multiple_positions(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "multi.ome.zarr", dimensions=visit_dims((24, 32), 8), dtype="uint16"
    )
    frames = make_frames(math.prod(VISIT_SHAPE), (24, 32))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    acq = frames.reshape(*VISIT_SHAPE, 24, 32)
    root = tmp_path / "multi.ome.zarr"
    for p, name in enumerate(SITES):
        np.testing.assert_array_equal(read_zarr(root / name / "0"), acq[:, p])
        np.testing.assert_array_equal(read_ts(root / name / "0"), acq[:, p])
        attrs = json.loads((root / name / "zarr.json").read_text())["attributes"]
        assert attrs["ome"]["multiscales"][0]["name"] == name
    root_attrs = json.loads((root / "zarr.json").read_text())["attributes"]
    assert root_attrs["ome"]["bioformats2raw.layout"] == 3
    series = json.loads((root / "OME" / "zarr.json").read_text())["attributes"]["ome"]["series"]
    assert series == list(SITES)


@pytest.mark.anyio
async def test_shards_are_written_whole(tmp_path: Path) -> None:
    dims = [
        Dimension(name="t", count=5, chunk_size=1, shard_size_chunks=2),
        Dimension(name="z", count=3, chunk_size=1, shard_size_chunks=3),
        Dimension(name="y", count=16, chunk_size=8, shard_size_chunks=2),
        Dimension(name="x", count=16, chunk_size=8, shard_size_chunks=2),
    ]
    settings = AcquisitionSettings(
        root_path=tmp_path / "s.ome.zarr", dimensions=dims, dtype="uint8", compression="blosc-zstd"
    )
    frames = make_frames(15, (16, 16), dtype="uint8")
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    array = zarr.open_array(str(tmp_path / "s.ome.zarr" / "0"), mode="r")
    assert array.shards == (2, 3, 16, 16)
    assert array.chunks == (1, 1, 8, 8)
    np.testing.assert_array_equal(array[...], frames.reshape(5, 3, 16, 16))
    np.testing.assert_array_equal(
        read_ts(tmp_path / "s.ome.zarr" / "0"), frames.reshape(5, 3, 16, 16)
    )


@pytest.mark.anyio
async def test_unbounded_is_trimmed_to_what_was_written(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.zarr",
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=None, type="time", unit="s"),
            Dimension(name="c", count=3, chunk_size=1),
            *dims_from_standard_axes({"y": 16, "x": 12}),
        ],
    )
    frames = make_frames(10, (16, 12))  # 3 full time points and a third of a fourth
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    data = read_ts(tmp_path / "u.ome.zarr" / "0")
    assert data.shape == (4, 3, 16, 12)
    padded = np.concatenate([frames, np.zeros((2, 16, 12), "uint16")])
    np.testing.assert_array_equal(data, padded.reshape(4, 3, 16, 12))


# ---------------------------------------------------------------- producer API
@pytest.mark.anyio
async def test_bad_frames_are_rejected_and_the_stream_stays_usable(tmp_path: Path) -> None:
    settings = series(tmp_path / "v.ome.zarr", 3)
    frames = make_frames(3, (8, 8))
    async with open_stream(settings) as stream:
        with pytest.raises(ValueError, match=r"frame shape \(8, 9\) does not match .*\(8, 8\)"):
            await stream.append(np.zeros((8, 9), "uint16"))
        with pytest.raises(TypeError, match="frame dtype float64 does not match .* uint16"):
            await stream.append(np.zeros((8, 8)))
        # Fortran-ordered and strided views are fine.
        await stream.append(np.asfortranarray(frames[0]))
        await stream.append(np.ascontiguousarray(np.repeat(frames[1], 2, axis=1))[:, ::2])
        await stream.append(frames[2], frame_metadata={"exposure_time": 5})
        with pytest.raises(IndexError, match="Cannot append frame: would exceed total of 3 frames"):
            await stream.append(frames[0])
        assert stream.stats.frames_accepted == 3
    np.testing.assert_array_equal(read_zarr(tmp_path / "v.ome.zarr" / "0"), frames)
    with pytest.raises(anyio.ClosedResourceError, match="not open"):
        await stream.append(frames[0])


@pytest.mark.anyio
async def test_copy_false_skip_and_flush(tmp_path: Path) -> None:
    settings = series(tmp_path / "k.ome.zarr", 4)
    frames = make_frames(4, (8, 8))
    async with open_stream(settings) as stream:
        await stream.append(frames[0].copy(), copy=False)
        await stream.skip()
        await stream.flush()
        # After flush the frames are in storage, readable by another reader mid-acquisition.
        partial = read_zarr(tmp_path / "k.ome.zarr" / "0")
        np.testing.assert_array_equal(partial[0], frames[0])
        assert stream.stats.frames_written == 2
        buffer = frames[2].copy()
        await stream.append(buffer)
        buffer[:] = 0  # the stream copied it: reusing the camera buffer is safe
        await stream.append(frames[3])
    data = read_zarr(tmp_path / "k.ome.zarr" / "0")
    np.testing.assert_array_equal(data[[0, 2, 3]], frames[[0, 2, 3]])
    assert not data[1].any()


@pytest.mark.anyio
async def test_frame_metadata_is_stored(tmp_path: Path) -> None:
    settings = series(tmp_path / "m.ome.zarr", 2, (4, 4), dtype="uint8")
    async with open_stream(settings) as stream:
        await stream.append(np.ones((4, 4), "uint8"), metadata={"delta_t": 0.5, "note": "a"})
        await stream.append(np.ones((4, 4), "uint8"), frame_metadata={"delta_t": 1.5})
        await stream.set_global_metadata("instrument", {"objective": "60x"})
        with pytest.raises(ValueError, match="reserved"):
            await stream.set_global_metadata("ome", {"a": 1})
    attrs = zarr.open_group(str(tmp_path / "m.ome.zarr"), mode="r").attrs.asdict()
    records = attrs["ome_writers"]["frame_metadata"]
    assert [r["delta_t"] for r in records] == [0.5, 1.5]
    assert records[0]["storage_index"] == [0] and records[0]["note"] == "a"
    assert attrs["instrument"] == {"objective": "60x"}


@pytest.mark.anyio
async def test_overwrite_rules(tmp_path: Path) -> None:
    settings = series(tmp_path / "o.ome.zarr", 1, (4, 4), dtype="uint8")
    async with open_stream(settings) as stream:
        await stream.append(np.full((4, 4), 7, "uint8"))
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        async with open_stream(settings):
            pass
    np.testing.assert_array_equal(read_zarr(tmp_path / "o.ome.zarr" / "0"), 7)  # untouched
    async with open_stream(settings.model_copy(update={"overwrite": True})) as stream:
        await stream.append(np.full((4, 4), 9, "uint8"))
    np.testing.assert_array_equal(read_zarr(tmp_path / "o.ome.zarr" / "0"), 9)
    precious = tmp_path / "notes.ome.zarr"  # a directory that is not a dataset
    precious.mkdir()
    (precious / "thesis.txt").write_text("irreplaceable")
    other = AcquisitionSettings(
        root_path=precious,
        overwrite=True,
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 1, "y": 4, "x": 4}),
    )
    with pytest.raises(FileExistsError, match="refusing to delete it"):
        async with open_stream(other):
            pass
    assert (precious / "thesis.txt").read_text() == "irreplaceable"


# ---------------------------------------------------------------- backpressure and failures
@pytest.fixture
def slow_backend(monkeypatch: pytest.MonkeyPatch):
    import slow_backend as module

    return module.register(monkeypatch)


@pytest.mark.anyio
async def test_slow_storage_makes_append_wait_within_the_budget(tmp_path: Path, slow_backend):
    frame_bytes = 64 * 64 * 2
    settings = series(tmp_path / "slow.ome.zarr", 40, (64, 64), format="slow-tensorstore")
    frames = make_frames(40, (64, 64))
    stream = open_stream(settings, max_buffer_bytes=5 * frame_bytes)
    slow_backend.stream = stream
    async with stream:
        assert stream.capacity == 5
        waited = 0
        for frame in frames:
            try:
                stream.append_nowait(frame)
            except anyio.WouldBlock:
                waited += 1
                await stream.append(frame)  # waits for room: backpressure
            assert stream.stats.bytes_buffered <= 5 * frame_bytes
    slow_backend.stream = None
    assert waited > 0  # the camera outran the storage, and the producer felt it
    assert stream.stats.peak_bytes_buffered == 5 * frame_bytes
    assert all(pending <= capacity for pending, capacity in slow_backend.observations)
    np.testing.assert_array_equal(read_zarr(tmp_path / "slow.ome.zarr" / "0"), frames)


@pytest.mark.anyio
async def test_logging_tells_open_close_and_drain_progress(
    tmp_path: Path, slow_backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ome_stream import _pipeline

    monkeypatch.setattr(_pipeline, "DRAIN_REPORT_INTERVAL", 0.01)
    monkeypatch.setattr(slow_backend, "delay", 0.05)
    caplog.set_level(logging.DEBUG, logger="ome_stream")
    settings = series(tmp_path / "log.ome.zarr", 12, (16, 16), format="slow-tensorstore")
    frames = make_frames(12, (16, 16))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    messages = [r.getMessage() for r in caplog.records if r.name == "ome_stream"]
    assert any(
        m.startswith(f"opening {str(tmp_path / 'log.ome.zarr')!r}: format ome-zarr, backend "
                     "slow-tensorstore, 12 frames of 16x16 uint16") for m in messages
    )  # fmt: skip
    assert any(m.startswith("closing") and "12 frames accepted" in m for m in messages)
    assert any(m.startswith("draining: ") and "of 12 frames written" in m for m in messages)
    assert messages[-1].startswith(f"closed {str(tmp_path / 'log.ome.zarr')!r}: 12 frames written")
    np.testing.assert_array_equal(read_zarr(tmp_path / "log.ome.zarr" / "0"), frames)


def test_the_logger_is_silent_by_default() -> None:
    handlers = logging.getLogger("ome_stream").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


@pytest.mark.anyio
async def test_storage_failure_surfaces_as_writer_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = series(tmp_path / "f.ome.zarr", 6, (4, 4), dtype="uint8")
    frames = make_frames(6, (4, 4), dtype="uint8")
    with pytest.raises(WriterError, match="failed") as info:  # noqa: PT012
        async with open_stream(settings) as stream:
            await stream.append(frames[0])
            await stream.append(frames[1])
            await stream.flush()
            # A real fault: the directory for the next chunks becomes a regular file.
            (tmp_path / "f.ome.zarr" / "0" / "c" / "2").write_bytes(b"not a directory")
            await stream.append(frames[2])
            with pytest.raises(WriterError):
                await stream.flush()
            raise AssertionError("unreachable: flush must raise")  # pragma: no cover
    assert info.value.__cause__ is not None
    errors = [r for r in caplog.records if r.name == "ome_stream" and r.levelno == logging.ERROR]
    assert errors and errors[0].getMessage().startswith("storage failed: ")
    assert errors[0].exc_info is not None
    data = read_zarr(tmp_path / "f.ome.zarr" / "0")
    np.testing.assert_array_equal(data[:2], frames[:2])  # written before the fault: intact


@pytest.mark.anyio
async def test_cancelled_producer_loses_nothing_it_appended(tmp_path: Path) -> None:
    settings = series(tmp_path / "c.ome.zarr", 50, (32, 32))
    frames = make_frames(50, (32, 32))
    appended = 0
    with anyio.CancelScope() as scope:  # cancelled mid-acquisition, at a producer's await
        async with open_stream(settings) as stream:
            for frame in frames:
                await stream.append(frame)
                appended += 1
                if appended == 17:
                    scope.cancel()
                await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught and appended == 17
    data = read_zarr(tmp_path / "c.ome.zarr" / "0")
    np.testing.assert_array_equal(data[:appended], frames[:appended])
    assert not data[appended:].any()


@pytest.mark.anyio
async def test_append_into_free_room_is_cancellable_and_lets_other_tasks_run(
    tmp_path: Path,
) -> None:
    """append takes room without a scheduling point per frame, yet checks cancellation at
    every call and yields to other tasks while a producer appends as fast as it can."""
    count = 3000
    settings = series(tmp_path / "p.ome.zarr", count, (16, 16))
    frames = make_frames(count, (16, 16))
    ticks = 0

    async def other_task() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    appended = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        await anyio.lowlevel.checkpoint()
        async with open_stream(settings) as stream:
            with anyio.CancelScope() as scope:
                for frame in frames:  # room for every frame: append never waits
                    await stream.append(frame)
                    appended += 1
                    if appended == 1:
                        ticks_at_first = ticks
                    if appended == 2500:
                        ticks_while_appending = ticks - ticks_at_first
                        scope.cancel()  # the next append raises, accepting nothing
        tg.cancel_scope.cancel()
    assert scope.cancelled_caught and appended == 2500
    assert ticks_while_appending > 0  # the other task ran between appends
    data = read_zarr(tmp_path / "p.ome.zarr" / "0")
    np.testing.assert_array_equal(data[:appended], frames[:appended])
    assert not data[appended:].any()


def test_sync_facade_from_a_thread_and_inside_a_running_loop(tmp_path: Path) -> None:
    frames = make_frames(3, (8, 8))

    def acquire(name: str) -> None:
        settings = series(tmp_path / name, 3)
        with create_stream(settings) as stream:
            for frame in frames:
                stream.append(frame)

    worker = threading.Thread(target=acquire, args=("thread.ome.zarr",))
    worker.start()
    worker.join()

    async def notebook_cell() -> None:  # synchronous code called from a running event loop
        acquire("loop.ome.zarr")

    anyio.run(notebook_cell)
    for name in ("thread.ome.zarr", "loop.ome.zarr"):
        np.testing.assert_array_equal(read_zarr(tmp_path / name / "0"), frames)


# ---------------------------------------------------------------- frame metadata checks
def _strict_json(path: Path):
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} holds the non-JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _records_with(document, key: str) -> list[dict]:
    """Every mapping inside a JSON document that has ``key`` (wherever frames are kept)."""
    found = []
    if isinstance(document, dict):
        if key in document:
            found.append(document)
        for value in document.values():
            found += _records_with(value, key)
    elif isinstance(document, list):
        for value in document:
            found += _records_with(value, key)
    return found


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
async def test_frame_metadata_is_checked_at_append(tmp_path: Path, fmt: str) -> None:
    root = tmp_path / ("m.ome.zarr" if fmt == "ome-zarr" else "m.ome.tiff")
    settings = AcquisitionSettings(
        root_path=root, dtype="uint8", dimensions=dims_from_standard_axes({"t": 3, "y": 4, "x": 4})
    )
    frames = make_frames(3, (4, 4), dtype="uint8")
    cycle: list[object] = []
    cycle.append(cycle)
    async with open_stream(settings) as stream:
        await stream.append(
            frames[0],
            metadata={
                "exposure_time": np.float32(0.25),
                "count": np.int64(7),
                "flags": (np.bool_(True), None),
                "stage": {"label": "A1", "z": np.float64(1.5)},
            },
        )
        bad: list[tuple[dict, type[Exception], str]] = [
            ({"tags": {"a", "b"}}, TypeError, "'tags': a set cannot be stored as JSON"),
            ({"raw": b"\x00"}, TypeError, "'raw': a bytes cannot"),
            ({"obj": object()}, TypeError, "'obj': a object cannot"),
            ({"image": np.zeros(2)}, TypeError, r"'image'.*\.tolist\(\)"),
            ({"loop": cycle}, TypeError, r"'loop\[0\]' contains a reference cycle"),
            ({"deep": {"x": float("nan")}}, ValueError, "'deep.x' is nan: JSON has no NaN"),
            ({"gain": float("inf")}, ValueError, "'gain' is inf"),
            ({"frame": 12}, ValueError, "'frame' is reserved"),
            ({"index": {"t": 2}}, ValueError, "'index' is reserved"),
            ({"exposure_time": "10 ms"}, TypeError, "'exposure_time' must be a number"),
            ({"delta_t": True}, TypeError, "'delta_t' must be a number"),
            ({1: "x"}, TypeError, "keys must be strings"),
        ]
        for metadata, error, message in bad:
            with pytest.raises(error, match=message):
                await stream.append(frames[1], metadata=metadata)
        assert stream.stats.frames_accepted == 1  # nothing queued; the stream stays usable
        await stream.append(frames[1], frame_metadata={"exposure_time": 2})
        await stream.append(frames[2])
    if fmt == "ome-zarr":
        np.testing.assert_array_equal(read_zarr(root / "0"), frames)
        documents = [_strict_json(p) for p in root.rglob("zarr.json")]
        (first,) = [r for d in documents for r in _records_with(d, "count")]
        assert first["count"] == 7 and first["exposure_time"] == 0.25
        assert first["flags"] == [True, None] and first["stage"] == {"label": "A1", "z": 1.5}
        assert first["storage_index"] == [0]  # the stream's own record, not overwritten
        (second,) = [
            r for d in documents for r in _records_with(d, "exposure_time") if r is not first
        ]
        assert second["exposure_time"] == 2 and second["storage_index"] == [1]
    else:
        import tifffile
        from ome_types import from_tiff

        np.testing.assert_array_equal(tifffile.imread(root), frames)
        planes = from_tiff(root).images[0].pixels.planes
        assert [p.exposure_time for p in planes[:2]] == [0.25, 2]


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ["tensorstore", "zarr-python"])
async def test_reused_block_buffers_hold_no_stale_pixels(tmp_path: Path, backend: str) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "r.ome.zarr",
        format=backend,
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=8, chunk_size=4),
            *dims_from_standard_axes({"y": 8, "x": 8}),
        ],
    )
    frames = make_frames(8, (8, 8))
    async with open_stream(settings) as stream:
        for frame in frames[:4]:
            await stream.append(frame)
        await stream.flush()  # block 0 written: its buffer is free for block 1
        await stream.append(frames[4])
        await stream.skip()  # frame 5: must read 0, not block 0's frame 1
        await stream.append(frames[6])
        # frame 7 never comes: it must read 0 as well
    expected = frames.copy()
    expected[[5, 7]] = 0
    np.testing.assert_array_equal(read_zarr(tmp_path / "r.ome.zarr" / "0"), expected)
    np.testing.assert_array_equal(read_ts(tmp_path / "r.ome.zarr" / "0"), expected)


def test_sync_append_waits_for_room_within_the_budget(tmp_path: Path, slow_backend) -> None:
    frame_bytes = 32 * 32 * 2
    settings = series(tmp_path / "sync-slow.ome.zarr", 20, (32, 32), format="slow-tensorstore")
    frames = make_frames(20, (32, 32))
    with create_stream(settings, max_buffer_bytes=3 * frame_bytes) as stream:
        slow_backend.stream = stream._async
        for frame in frames:  # the fast path while there is room, a wait when there is none
            stream.append(frame)
            assert stream.stats.bytes_buffered <= 3 * frame_bytes
    slow_backend.stream = None
    assert stream.stats.peak_bytes_buffered == 3 * frame_bytes  # it filled, and waited
    assert all(pending <= capacity for pending, capacity in slow_backend.observations)
    np.testing.assert_array_equal(read_zarr(tmp_path / "sync-slow.ome.zarr" / "0"), frames)


# ---------------------------------------------------------------- runs of pixels
@pytest.mark.anyio
async def test_runs_of_pixels_become_whole_frames(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "runs.ome.zarr",
        dtype="uint16",
        dimensions=dims_from_standard_axes({"z": 5, "y": 6, "x": 4}),
    )
    frames = make_frames(5, (6, 4))
    flat = frames.ravel()
    cuts = [0, 7, 7, 30, 31, 96, 120]  # empty, partial, several frames at once, ...
    async with open_stream(settings) as stream:
        for start, stop in itertools.pairwise(cuts):
            await stream.append(flat[start:stop])
        assert stream.stats.frames_accepted == 5
        np.testing.assert_array_equal(await stream.view().read(3), frames[3])
        with pytest.raises(IndexError, match="would exceed total of 5 frames"):
            await stream.append(flat[:1])
    np.testing.assert_array_equal(read_zarr(tmp_path / "runs.ome.zarr" / "0"), frames)
    np.testing.assert_array_equal(read_ts(tmp_path / "runs.ome.zarr" / "0"), frames)


def test_bad_runs_are_refused_and_an_incomplete_frame_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = series(tmp_path / "bad.ome.zarr", None, (4, 4))
    frames = make_frames(3, (4, 4))
    flat = frames.ravel()
    caplog.set_level(logging.WARNING, logger="ome_stream")
    with create_stream(settings) as stream:
        stream.append(flat[:10])
        with pytest.raises(TypeError, match="frame metadata needs a whole frame"):
            stream.append(flat[10:16], frame_metadata={"exposure_time": 0.01})
        with pytest.raises(TypeError, match="pixel dtype uint8 does not match"):
            stream.append(flat[10:16].astype("uint8"))
        stream.append(flat[10:40])  # the refused runs took nothing
        stream.append(flat[40:43])  # 8 + 3 pixels: still short of a frame
        assert stream.stats.frames_accepted == 2
    stored = read_zarr(tmp_path / "bad.ome.zarr" / "0")
    np.testing.assert_array_equal(stored, frames[:2])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("the last 11 pixels appended do not make a whole frame" in m for m in warned)


def test_sync_append_checks_frames_in_the_callers_thread(tmp_path: Path) -> None:
    """Errors are not deferred: each raises at its own call, and nothing is lost."""
    settings = series(tmp_path / "checked.ome.zarr", 6, (16, 16))
    frames = make_frames(6, (16, 16), seed=5)
    with create_stream(settings) as stream:
        stream.append(frames[0])
        with pytest.raises(ValueError, match=r"frame shape \(16, 17\)") as bad_shape:
            stream.append(np.zeros((16, 17), dtype="uint16"))
        # raised by the check in this thread, not by the loop's thread
        assert bad_shape.traceback[-1].name == "check_frame"
        with pytest.raises(TypeError, match="dtype float32"):
            stream.append(frames[1].astype("float32"))
        with pytest.raises(TypeError, match="metadata must be a dict"):
            stream.append(frames[1], metadata=[1])  # type: ignore[arg-type]
        for frame in frames[1:]:
            stream.append(frame)
        with pytest.raises(IndexError, match="would exceed total of 6 frames"):
            stream.append(frames[0])  # checked before the frame is queued
        assert stream.stats.frames_accepted == 6
    np.testing.assert_array_equal(read_zarr(tmp_path / "checked.ome.zarr" / "0"), frames)
    np.testing.assert_array_equal(read_ts(tmp_path / "checked.ome.zarr" / "0"), frames)


def test_sync_append_copies_before_returning(tmp_path: Path) -> None:
    """One camera buffer, refilled after every append: each frame keeps its own pixels."""
    settings = series(tmp_path / "reuse.ome.zarr", 50, (32, 32))
    frames = make_frames(50, (32, 32), seed=9)
    buffer = np.empty((32, 32), dtype="uint16")
    with create_stream(settings) as stream:
        for frame in frames:
            buffer[...] = frame
            stream.append(buffer)
        buffer[...] = 0  # overwritten before anything may have reached storage
    np.testing.assert_array_equal(read_zarr(tmp_path / "reuse.ome.zarr" / "0"), frames)


def test_sync_append_blocks_while_storage_is_slow(tmp_path: Path, slow_backend) -> None:
    """With slow storage, ``append`` itself waits: frames in memory stay bounded."""
    frame_bytes = 32 * 32 * 2
    settings = series(tmp_path / "blocks.ome.zarr", 30, (32, 32), format="slow-tensorstore")
    frames = make_frames(30, (32, 32), seed=2)
    stream = create_stream(settings, max_buffer_bytes=8 * frame_bytes)
    core = stream._async
    held, waited = [], 0
    with stream:
        for handed, frame in enumerate(frames, start=1):
            written = core.stats.frames_written
            stream.append(frame)
            waited += core.stats.frames_written > written  # storage progressed meanwhile
            held.append(handed - core.stats.frames_written)
    assert core.capacity == 8
    assert waited > 0
    assert max(held) <= core.capacity  # the buffer, no more
    np.testing.assert_array_equal(read_zarr(tmp_path / "blocks.ome.zarr" / "0"), frames)


def test_metadata_rewrite_after_close_on_broken_storage_is_a_writer_error(tmp_path: Path) -> None:
    """After close, storage that fails (the dataset replaced by a plain file) is reported
    as WriterError naming the cause, like every storage failure."""
    import shutil

    from ome_stream import WriterError

    root = tmp_path / "gone.ome.zarr"
    settings = AcquisitionSettings(
        root_path=root, dtype="uint8", dimensions=dims_from_standard_axes({"t": 1, "y": 4, "x": 4})
    )
    with create_stream(settings) as stream:
        stream.append(np.ones((4, 4), "uint8"))
    shutil.rmtree(root)
    root.write_text("not a dataset")  # a file where the group directory was
    with pytest.raises(WriterError, match="cannot rewrite the metadata.*Not a directory") as caught:
        stream.set_global_metadata("lab", {"scope": "A"})
    assert caught.value.__cause__ is not None  # the storage library's own error, chained
    assert root.read_text() == "not a dataset"  # nothing written over it
