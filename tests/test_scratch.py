"""The scratch backend: numpy arrays in memory, or memory-mapped files with a manifest.

In-memory results are compared with the frames through the backend's live arrays and the
stream's view; files are read back with ``np.fromfile`` and ``json`` (not through the
backend), and the manifest and frame-metadata lines are checked field by field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ome_stream
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    ScratchFormat,
    WriterError,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from ome_stream.backends.scratch import ScratchArray, ScratchBackend
from ome_stream.layout import AcquisitionRecord, Layout

SHAPE = (8, 12)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory: a memory stream must leave it empty."""
    monkeypatch.chdir(tmp_path)


def scratch(root: Path | str = "", sizes: dict[str, Any] | None = None, **kw: Any):
    kw.setdefault("format", "scratch")
    return AcquisitionSettings(
        root_path=str(root),
        dtype="uint16",
        dimensions=dims_from_standard_axes(sizes or {"t": 3, "c": 2, "y": 8, "x": 12}),
        **kw,
    )


def backend_of(stream: Any) -> ScratchBackend:
    backend = stream._async._backend if hasattr(stream, "_async") else stream._backend
    assert isinstance(backend, ScratchBackend)
    return backend


def read_files(root: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The manifest and every position's pixels, read without the backend."""
    manifest = json.loads((root / "manifest.json").read_text())
    dtype = np.dtype(manifest["dtype"])
    arrays = []
    for i, shape in enumerate(manifest["position_shapes"]):
        path = root / f"pos_{i}.dat"
        assert path.stat().st_size == math.prod(shape) * dtype.itemsize  # trimmed exactly
        arrays.append(np.fromfile(path, dtype=dtype).reshape(shape))
    return manifest, arrays


def metadata_lines(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "frame_metadata.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the generic round trip
@pytest.fixture(params=["memory", "files"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Scratch in memory (no root_path) or as files under a root_path."""
    return "" if request.param == "memory" else str(tmp_path / "run.scratch")


@pytest.mark.anyio
async def test_multi_position_5d_round_trip(where: str, tmp_path: Path) -> None:
    sizes = {"t": 2, "p": ["A", "B"], "c": 2, "z": 3, "y": 8, "x": 12}
    settings = scratch(where, sizes)
    frames = make_frames(24, SHAPE)
    async with open_stream(settings) as stream:
        arrays = backend_of(stream).get_arrays()
        assert [a.shape for a in arrays] == [(2, 2, 3, *SHAPE)] * 2
        for frame in frames:
            await stream.append(frame)
        # (no flush here: with several positions it deadlocks in the stream, see report)
        view = await stream.view().read()
    live = [np.asarray(a) for a in arrays]
    acquired = frames.reshape(2, 2, 2, 3, *SHAPE)  # t, p, c, z, y, x
    expected = [acquired[:, p] for p in range(2)]
    np.testing.assert_array_equal(view, acquired)
    for p in range(2):
        np.testing.assert_array_equal(live[p], expected[p])
        assert arrays[p].dtype == np.uint16
    if where:
        manifest, on_disk = read_files(Path(where))
        assert manifest["position_shapes"] == [[2, 2, 3, *SHAPE]] * 2
        for p in range(2):
            np.testing.assert_array_equal(on_disk[p], expected[p])
    assert sorted(p.name for p in tmp_path.iterdir()) == (["run.scratch"] if where else [])


def test_sync_facade_unbounded_growth_and_final_shape(where: str) -> None:
    settings = scratch(where, {"t": None, "c": 2, "y": 8, "x": 12})
    frames = make_frames(2 * 70, SHAPE, seed=4)  # 70 rows: several resizes
    with create_stream(settings) as stream:
        arrays = backend_of(stream).get_arrays()
        assert arrays[0].shape == (1, 2, *SHAPE)  # ome-writers: 1 before any frame
        for frame in frames[:41]:
            stream.append(frame)
        # as in ome-writers, an append shows in the arrays as soon as it returns
        assert arrays[0].shape == (21, 2, *SHAPE)  # rows begun so far, not the capacity
        np.testing.assert_array_equal(arrays[0][20, 0], frames[40])
        with pytest.raises(IndexError):
            arrays[0][21, 0]
        for frame in frames[41:]:
            stream.append(frame)
    expected = frames.reshape(70, 2, *SHAPE)
    assert arrays[0].shape == (70, 2, *SHAPE)
    np.testing.assert_array_equal(np.asarray(arrays[0]), expected)
    if where:
        manifest, on_disk = read_files(Path(where))
        assert manifest["position_shapes"] == [[70, 2, *SHAPE]]
        np.testing.assert_array_equal(on_disk[0], expected)


def test_sync_appends_show_at_once_in_every_position(where: str) -> None:
    settings = scratch(where, {"t": None, "p": ["A", "B"], "c": 2, "y": 8, "x": 12})
    frames = make_frames(12, SHAPE, seed=7)  # 3 time points x 2 positions x 2 channels
    with create_stream(settings) as stream:
        arrays = backend_of(stream).get_arrays()
        for number, frame in enumerate(frames):
            stream.append(frame)
            t, p, c = number // 4, number // 2 % 2, number % 2
            assert arrays[p].shape[0] == t + 1
            np.testing.assert_array_equal(arrays[p][t, c], frame)
    expected = frames.reshape(3, 2, 2, *SHAPE)
    for p in range(2):
        np.testing.assert_array_equal(np.asarray(arrays[p]), expected[:, p])
    if where:
        _, on_disk = read_files(Path(where))
        for p in range(2):
            np.testing.assert_array_equal(on_disk[p], expected[:, p])


@pytest.mark.anyio
async def test_skipped_frames_are_zero_even_past_the_allocated_rows(where: str) -> None:
    settings = scratch(where, {"t": None, "c": 2, "y": 8, "x": 12})
    frames = make_frames(3, SHAPE, seed=2)
    async with open_stream(settings) as stream:
        arrays = backend_of(stream).get_arrays()
        await stream.append(frames[0])  # t0 c0
        await stream.skip(1)  # t0 c1
        await stream.append(frames[1])  # t1 c0
        await stream.skip(100)  # t1 c1 ... t51 c0: beyond any allocation so far
        await stream.append(frames[2])  # t51 c1
    data = np.asarray(arrays[0])
    assert data.shape == (52, 2, *SHAPE)
    np.testing.assert_array_equal(data[0, 0], frames[0])
    np.testing.assert_array_equal(data[1, 0], frames[1])
    np.testing.assert_array_equal(data[51, 1], frames[2])
    data[0, 0] = 0
    data[1, 0] = 0
    data[51, 1] = 0
    assert not data.any()
    if where:
        np.testing.assert_array_equal(read_files(Path(where))[1][0], np.asarray(arrays[0]))


def test_two_d_acquisition(where: str) -> None:
    frame = make_frames(1, SHAPE, seed=9)[0]
    with create_stream(scratch(where, {"y": 8, "x": 12})) as stream:
        arrays = backend_of(stream).get_arrays()
        stream.append(frame)
    np.testing.assert_array_equal(arrays[0][...], frame)
    if where:
        manifest, on_disk = read_files(Path(where))
        assert manifest["position_shapes"] == [list(SHAPE)]
        np.testing.assert_array_equal(on_disk[0], frame)


@pytest.mark.anyio
async def test_bad_frames_are_refused_and_lose_nothing(where: str) -> None:
    frames = make_frames(6, SHAPE, seed=5)
    async with open_stream(scratch(where)) as stream:
        arrays = backend_of(stream).get_arrays()
        await stream.append(frames[0])
        with pytest.raises(ValueError, match="frame shape"):
            await stream.append(np.zeros((8, 8), "uint16"))
        with pytest.raises(TypeError, match="dtype"):
            await stream.append(frames[1].astype("float32"))
        for frame in frames[1:]:
            await stream.append(frame)
        with pytest.raises(IndexError, match="6 frames"):
            await stream.append(frames[0])
    np.testing.assert_array_equal(np.asarray(arrays[0]), frames.reshape(3, 2, *SHAPE))


def test_live_arrays_are_read_only(where: str) -> None:
    frames = make_frames(6, SHAPE, seed=6)
    with create_stream(scratch(where)) as stream:
        arrays = backend_of(stream).get_arrays()
        for frame in frames:
            stream.append(frame)
        stream.flush()
        plane = arrays[0][1, 1]
        with pytest.raises(ValueError, match="read-only"):
            plane[0, 0] = 1
        with pytest.raises(TypeError, match="read-only"):
            arrays[0][0, 0] = frames[0]
    # the refused writes changed nothing, and the stream still wrote every frame
    np.testing.assert_array_equal(np.asarray(arrays[0]), frames.reshape(3, 2, *SHAPE))
    assert isinstance(arrays[0], ScratchArray) and arrays[0].ndim == 4


# ---------------------------------------------------------------- files: manifest, metadata
def test_manifest_records_the_settings_and_global_metadata(tmp_path: Path) -> None:
    root = tmp_path / "meta"
    sizes = {"p": ["A", "B"], "t": 2, "c": 3, "y": 8, "x": 12}
    settings = scratch(root, sizes)
    summary = {"objective": "20x/0.8", "lasers": [405, 488], "stage": {"z_um": 12.5}}
    with create_stream(settings) as stream:
        stream.set_global_metadata("microscope", summary)
        for frame in make_frames(12, SHAPE):
            stream.append(frame)
        stream.set_global_metadata("operator", {"initials": "JD"})
    manifest, _ = read_files(root)
    recorded = {key: manifest[key] for key in ("version", "dtype", "root_path")}
    assert recorded == {
        "version": ome_stream.__version__,
        "dtype": "uint16",
        "root_path": str(root),
    }
    assert manifest["format"]["name"] == "scratch"
    dims = manifest["dimensions"]
    assert [d["name"] for d in dims] == ["p", "t", "c", "y", "x"]
    assert [d["type"] for d in dims] == ["position", "time", "channel", "space", "space"]
    assert [d["count"] for d in dims] == [2, 2, 3, 8, 12]
    assert [c["name"] for c in dims[0]["coords"]] == ["A", "B"]
    assert manifest["position_shapes"] == [[2, 3, *SHAPE]] * 2
    assert manifest["global_metadata"] == {
        "microscope": summary,
        "operator": {"initials": "JD"},
    }
    # after close, new global metadata reaches the manifest at once
    stream.set_global_metadata("late", {"k": "v"})
    manifest, _ = read_files(root)
    assert manifest["global_metadata"]["late"] == {"k": "v"}


def test_frame_metadata_lines_in_acquisition_order(tmp_path: Path) -> None:
    root = tmp_path / "fm"
    settings = scratch(root, {"t": 2, "p": ["A", "B"], "c": 2, "y": 8, "x": 12})
    with create_stream(settings) as stream:
        for i in range(8):
            meta = {"delta_t": i * 0.1, "exposure_time": 0.05} if i != 3 else None
            stream.append(np.zeros(SHAPE, "uint16"), frame_metadata=meta)
    lines = metadata_lines(root)
    assert len(lines) == 7  # frame 3 carried none
    numbers = [i for i in range(8) if i != 3]
    # acquisition (t, p, c) → position p, storage index (t, c)
    where = [((i // 2) % 2, [i // 4, i % 2]) for i in numbers]
    assert [(line["_pos"], line["_idx"]) for line in lines] == where
    assert [line["delta_t"] for line in lines] == pytest.approx([i * 0.1 for i in numbers])
    assert {line["exposure_time"] for line in lines} == {0.05}
    assert all(set(line) == {"_pos", "_idx", "delta_t", "exposure_time"} for line in lines)


def test_frame_metadata_file_is_empty_without_metadata(tmp_path: Path) -> None:
    with create_stream(scratch(tmp_path / "none")) as stream:
        for frame in make_frames(6, SHAPE):
            stream.append(frame)
    assert (tmp_path / "none" / "frame_metadata.jsonl").read_text() == ""


def test_memory_mode_writes_nothing_and_keeps_global_metadata(tmp_path: Path) -> None:
    with create_stream(scratch("")) as stream:
        stream.set_global_metadata("lab", {"room": "B12"})
        stream.append(np.ones(SHAPE, "uint16"), frame_metadata={"delta_t": 0.0})
        backend = backend_of(stream)
    assert backend.root is None and not backend.on_disk
    assert backend._global_metadata == {"lab": {"room": "B12"}}
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the target
def test_existing_root_needs_overwrite_and_only_a_scratch_dataset_is_replaced(
    tmp_path: Path,
) -> None:
    root = tmp_path / "again"
    first = make_frames(6, SHAPE, seed=1)
    with create_stream(scratch(root)) as stream:
        for frame in first:
            stream.append(frame)
    with pytest.raises(FileExistsError, match="overwrite=True"), create_stream(scratch(root)):
        pass
    np.testing.assert_array_equal(read_files(root)[1][0], first.reshape(3, 2, *SHAPE))
    second = make_frames(6, SHAPE, seed=2)
    with create_stream(scratch(root, overwrite=True)) as stream:
        for frame in second:
            stream.append(frame)
    np.testing.assert_array_equal(read_files(root)[1][0], second.reshape(3, 2, *SHAPE))

    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.txt").write_text("irreplaceable")
    with (
        pytest.raises((FileExistsError, WriterError)) as caught,
        create_stream(scratch(precious, overwrite=True)),
    ):
        pass
    assert "refusing to delete" in str(caught.value) + str(caught.value.__cause__)
    assert (precious / "chapter1.txt").read_text() == "irreplaceable"


# ---------------------------------------------------------------- max_memory_bytes
def _memory_error(error: BaseException) -> MemoryError:
    """The MemoryError itself, or the one a WriterError wraps."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, MemoryError):
        cause = cause.__cause__
    assert isinstance(cause, MemoryError), repr(error)
    return cause


def _backend(sizes: dict[str, Any], limit: int, spill: bool) -> ScratchBackend:
    fmt = ScratchFormat(max_memory_bytes=limit, spill_to_disk=spill)
    return ScratchBackend(Layout(scratch("", sizes, format=fmt)))


@pytest.mark.anyio
async def test_over_the_memory_limit_spills_to_a_temporary_directory() -> None:
    backend = _backend({"t": 4, "c": 2, "y": 8, "x": 12}, limit=1000, spill=True)  # 8x192 B
    with pytest.warns(UserWarning, match="Using disk-backed storage at"):
        await backend.open()
    assert backend.temporary and backend.root is not None
    assert backend.root.name.startswith("ome_scratch_")
    frames = make_frames(8, SHAPE, seed=3)
    for i, frame in enumerate(frames):
        await backend.write(0, (i // 2, i % 2), frame[None, None])
    shapes = [(4, 2, *SHAPE)]
    await backend.finalize(AcquisitionRecord(shapes, [[]]))
    _, on_disk = read_files(backend.root)
    np.testing.assert_array_equal(on_disk[0], frames.reshape(4, 2, *SHAPE))


@pytest.mark.anyio
async def test_over_the_memory_limit_without_spilling_is_a_memory_error() -> None:
    backend = _backend({"t": 3, "c": 2, "y": 8, "x": 12}, limit=1000, spill=False)
    with pytest.raises(MemoryError, match="max_memory_bytes"):
        await backend.open()


@pytest.mark.anyio
async def test_unbounded_growth_past_the_limit_spills_and_keeps_every_frame() -> None:
    """ome-writers checks the limit only at open; growing past it here spills too."""
    backend = _backend({"t": None, "y": 8, "x": 12}, limit=10 * 192, spill=True)  # 10 frames
    await backend.open()
    frames = make_frames(25, SHAPE, seed=8)
    for i, frame in enumerate(frames[:10]):
        await backend.resize(0, i + 1)
        await backend.write(0, (i,), frame[None])
    assert not backend.on_disk
    with pytest.warns(UserWarning, match="disk-backed"):
        await backend.resize(0, 11)
    assert backend.temporary
    for i, frame in enumerate(frames[10:], start=10):
        await backend.resize(0, i + 1)
        await backend.write(0, (i,), frame[None])
    np.testing.assert_array_equal(np.asarray(backend.get_arrays()[0]), frames)
    await backend.finalize(AcquisitionRecord([(25, *SHAPE)], [[]]))
    assert backend.root is not None
    np.testing.assert_array_equal(read_files(backend.root)[1][0], frames)


@pytest.mark.anyio
async def test_unbounded_growth_past_the_limit_without_spilling_fails_keeping_frames() -> None:
    backend = _backend({"t": None, "y": 8, "x": 12}, limit=10 * 192, spill=False)
    await backend.open()
    frames = make_frames(10, SHAPE, seed=8)
    for i, frame in enumerate(frames):
        await backend.resize(0, i + 1)
        await backend.write(0, (i,), frame[None])
    with pytest.raises(MemoryError, match="max_memory_bytes"):
        await backend.resize(0, 11)
    np.testing.assert_array_equal(np.asarray(backend.get_arrays()[0]), frames)


def test_scratch_format_options_through_the_stream() -> None:
    fmt = ScratchFormat(max_memory_bytes=1000, spill_to_disk=False)
    with pytest.raises((MemoryError, WriterError)) as caught, create_stream(scratch(format=fmt)):
        pass
    assert "max_memory_bytes=0.0 GB" in str(_memory_error(caught.value))
    with pytest.warns(UserWarning, match="disk-backed"):
        stream = create_stream(scratch(format=ScratchFormat(max_memory_bytes=1000)))
    frames = make_frames(6, SHAPE)
    with stream:
        for frame in frames:
            stream.append(frame)
        backend = backend_of(stream)
        assert backend.temporary
    assert backend.root is not None
    np.testing.assert_array_equal(read_files(backend.root)[1][0], frames.reshape(3, 2, *SHAPE))


def test_memory_alias_and_auto_format_without_root_path() -> None:
    frames = make_frames(6, SHAPE, seed=7)
    for settings in (
        scratch(format="memory"),
        AcquisitionSettings(
            dtype="uint16", dimensions=dims_from_standard_axes({"t": 3, "c": 2, "y": 8, "x": 12})
        ),
    ):
        assert settings.format == ScratchFormat()
        with create_stream(settings) as stream:
            for frame in frames:
                stream.append(frame)
            arrays = backend_of(stream).get_arrays()
        np.testing.assert_array_equal(np.asarray(arrays[0]), frames.reshape(3, 2, *SHAPE))


def test_storage_order_ome_keeps_the_acquisition_order() -> None:
    """As ome-writers: scratch arrays are stored in acquisition order (here c, t)."""
    frames = make_frames(6, SHAPE, seed=8)
    settings = scratch(sizes={"c": 2, "t": 3, "y": 8, "x": 12}, storage_order="ome")
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
        arrays = backend_of(stream).get_arrays()
    np.testing.assert_array_equal(np.asarray(arrays[0]), frames.reshape(2, 3, *SHAPE))
