"""Data safety on a local filesystem: ``overwrite`` replaces only our own datasets, and
atomically; one writer per dataset; a dataset deleted under the writer is reported;
cancelling an open releases everything; ``flush()`` on a reordering OME-TIFF is true.

Everything is real: directories and files, a second process holding a stream open and
killed with SIGKILL, and every output read back with tifffile, zarr-python or tensorstore.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import numpy as np
import pytest
import tensorstore as ts
import tifffile
import zarr

from ome_stream import (
    AcquisitionSettings,
    Dimension,
    Plate,
    Position,
    WriterError,
    available_backends,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)

BACKENDS = [b for b in ("tensorstore", "zarr-python", "tifffile") if b in available_backends()]
ZARR = [b for b in BACKENDS if b != "tifffile"]
SHAPE = (16, 16)


def frame(i: int) -> np.ndarray:
    """Frame ``i``: every pixel holds ``i + 1`` (0 is the fill value of a missing frame)."""
    return np.full(SHAPE, i + 1, dtype="uint16")


def suffix(backend: str) -> str:
    return ".ome.tiff" if backend == "tifffile" else ".ome.zarr"


def settings_for(
    root: Path | str, backend: str, count: int | None = 3, **extra: object
) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=root,
        format=backend,
        dtype="uint16",
        dimensions=dims_from_standard_axes({"t": count, "y": SHAPE[0], "x": SHAPE[1]}),
        **extra,
    )


async def write(settings: AcquisitionSettings, first: int = 0, n: int = 3) -> None:
    async with open_stream(settings) as stream:
        for i in range(first, first + n):
            await stream.append(frame(i))


def read(settings: AcquisitionSettings, position: int | None = None) -> np.ndarray:
    """The frames of one image, read by an independent reader (two for zarr)."""
    if settings.file_format == "ome-tiff":
        path = settings.tiff_file_paths()[position or 0]
        with tifffile.TiffFile(path) as tif:
            assert tif.is_ome
            return np.stack([page.asarray() for page in tif.pages])
    array = f"{settings.output_path}/{'' if position is None else f'{position}/'}0"
    by_zarr = np.asarray(zarr.open_array(array, mode="r")[...])
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": array}}
    np.testing.assert_array_equal(by_zarr, ts.open(spec, read=True).result().read().result())
    return by_zarr


def expected(first: int, n: int = 3) -> np.ndarray:
    return np.stack([frame(i) for i in range(first, first + n)])


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root`` with its content, to prove nothing changed."""
    entries: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            entries[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            entries[key] = path.read_bytes()
        else:
            entries[key] = "dir"
    return entries


def ome_stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ome-stream")]


def open_files_under(root: Path) -> list[str]:
    """Regular files under ``root`` this process holds open (tensorstore keeps directory
    handles of its own for a while; those are not ours to release)."""
    prefix = str(root.resolve())
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(prefix) and not os.path.isdir(target):
            held.append(target)
    return held


# ------------------------------------------------------------------ 1. by content
NOT_ZARR = {
    "settings file named zarr.json": '{"my": "settings"}',
    "not JSON": "zarr_format: 3",
    "zarr v2 key layout": '{"zarr_format": 2}',
    "unknown node type": '{"zarr_format": 3, "node_type": "folder"}',
}


@pytest.mark.anyio
@pytest.mark.parametrize("content", list(NOT_ZARR), ids=list(NOT_ZARR))
@pytest.mark.parametrize("backend", ZARR)
async def test_overwrite_parses_zarr_json_before_deleting(
    tmp_path: Path, backend: str, content: str
) -> None:
    """A user directory that merely contains a file named zarr.json is not a dataset."""
    target = tmp_path / "mine.ome.zarr"
    target.mkdir()
    (target / "zarr.json").write_text(NOT_ZARR[content])
    (target / "thesis.txt").write_text("irreplaceable")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="not an ome-zarr dataset.*refusing"):
        await write(settings_for(target, backend, overwrite=True))
    assert snapshot(tmp_path) == before


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ZARR)
async def test_overwrite_replaces_a_zarr_dataset(tmp_path: Path, backend: str) -> None:
    settings = settings_for(tmp_path / "run.ome.zarr", backend, overwrite=True)
    await write(settings, 0)
    await write(settings, 10)
    np.testing.assert_array_equal(read(settings), expected(10))
    # nothing else left next to it: no lock file, no old copy
    assert sorted(os.listdir(tmp_path)) == ["run.ome.zarr"]


@pytest.mark.anyio
async def test_overwrite_of_a_tiff_needs_ome_xml(tmp_path: Path) -> None:
    """A plain TIFF of the user's (no OME-XML) is not replaced; our own OME-TIFF is."""
    target = tmp_path / "scan.ome.tiff"
    tifffile.imwrite(target, np.ones((4, 4), "uint8"), description="my scan")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="not an ome-tiff dataset.*refusing"):
        await write(settings_for(target, "tifffile", overwrite=True))
    assert snapshot(tmp_path) == before
    target.unlink()
    await write(settings_for(target, "tifffile"), 0)
    await write(settings_for(target, "tifffile", overwrite=True), 10)
    np.testing.assert_array_equal(read(settings_for(target, "tifffile")), expected(10))
    assert sorted(os.listdir(tmp_path)) == ["scan.ome.tiff"]


# ------------------------------------------------------------------ 2. directories not named
def positions_settings(root: Path | str, n: int = 2, **extra: object) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=root,
        format="tifffile",
        dtype="uint16",
        dimensions=[
            Dimension(name="p", type="position", coords=[Position(name=f"p{i}") for i in range(n)]),
            # (a "t" of 1: positions alone trip a layout bug, reported separately)
            *dims_from_standard_axes({"t": 1, "y": SHAPE[0], "x": SHAPE[1]}),
        ],
        **extra,
    )


async def write_positions(settings: AcquisitionSettings, first: int) -> None:
    async with open_stream(settings) as stream:
        for i in range(len(settings.tiff_file_paths())):
            await stream.append(frame(first + i))


@pytest.mark.anyio
async def test_positions_never_delete_the_users_own_files(tmp_path: Path) -> None:
    """``root_path="run.ome.tiff"`` with two positions writes into ``run/``: the user's
    TIFFs already there stay; only files our naming produces, with OME-XML, are replaced."""
    folder = tmp_path / "run"
    folder.mkdir()
    tifffile.imwrite(folder / "calibration.tif", np.ones((4, 4), "uint8"))
    tifffile.imwrite(folder / "run_p000.tif", np.ones((4, 4), "uint8"))  # not our name
    users = snapshot(tmp_path)
    settings = positions_settings(tmp_path / "run.ome.tiff", overwrite=True)
    assert settings.output_path == str(folder)
    await write_positions(settings, 0)
    # an earlier acquisition of ours with three positions: all three files are ours
    await write_positions(positions_settings(tmp_path / "run.ome.tiff", 3, overwrite=True), 20)
    await write_positions(settings, 10)
    for p in range(2):
        np.testing.assert_array_equal(read(settings, p), frame(10 + p)[np.newaxis])
    assert not (folder / "run_p002.ome.tiff").exists()  # the stale file of ours is gone
    after = snapshot(tmp_path)
    for key, value in users.items():
        assert after[key] == value, f"{key} was changed or deleted"
    assert sorted(os.listdir(folder)) == [
        "calibration.tif",
        "run_p000.ome.tiff",
        "run_p000.tif",
        "run_p001.ome.tiff",
    ]
    # a file with our name that we did not write is refused, not overwritten
    (folder / "run_p001.ome.tiff").unlink()
    tifffile.imwrite(folder / "run_p001.ome.tiff", np.ones((4, 4), "uint8"), ome=False)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="run_p001.ome.tiff.*not an OME-TIFF file"):
        await write_positions(settings, 30)
    assert snapshot(tmp_path) == before


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["current directory", "ancestor", "home directory"])
async def test_never_replaces_the_current_home_or_ancestor_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Even when the directory holds nothing but files of ours."""
    home = tmp_path / "home"
    (home / "work" / "today").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home / "work" / "today")
    root = {"current directory": ".", "ancestor": "..", "home directory": str(home)}[where]
    settings = positions_settings(root, overwrite=True)
    directory = Path(settings.output_path).resolve()
    await write_positions(positions_settings(root), 0)  # a dataset of ours lands there
    (directory / "notes.txt").write_text("irreplaceable")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=f"is the {where.split()[0]}|is an ancestor"):
        await write_positions(settings, 10)
    assert snapshot(tmp_path) == before


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ZARR)
async def test_a_zarr_dataset_that_is_the_current_directory_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    settings = settings_for(tmp_path / "run.ome.zarr", backend)
    await write(settings, 0)
    monkeypatch.chdir(tmp_path / "run.ome.zarr" / "0")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="ancestor of the current directory"):
        await write(settings.model_copy(update={"overwrite": True}), 10)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ 3. atomic replacement
@pytest.mark.anyio
@pytest.mark.parametrize("backend", ZARR)
async def test_a_failed_open_keeps_the_old_dataset(tmp_path: Path, backend: str) -> None:
    """The new dataset cannot be created (a position name too long for the filesystem):
    the old one is still there, untouched, and nothing else is left behind."""
    old = settings_for(tmp_path / "run.ome.zarr", backend)
    await write(old, 0)
    before = snapshot(tmp_path)
    row = "A" * 300  # a plate row is a directory: longer than a file name may be
    too_long = AcquisitionSettings(
        root_path=tmp_path / "run.ome.zarr",
        format=backend,
        dtype="uint16",
        overwrite=True,
        plate=Plate(row_names=[row], column_names=["1"]),
        dimensions=[
            Dimension(
                name="p",
                type="position",
                coords=[Position(name="f", plate_row=row, plate_column="1")],
            ),
            *dims_from_standard_axes({"y": SHAPE[0], "x": SHAPE[1]}),
        ],
    )
    with pytest.raises(WriterError, match="cannot create"):
        await write(too_long, n=1)
    assert snapshot(tmp_path) == before
    np.testing.assert_array_equal(read(old), expected(0))


# ------------------------------------------------------------------ 4. one writer
@pytest.mark.anyio
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_second_writer_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str, overwrite: bool
) -> None:
    settings = settings_for(tmp_path / f"run{suffix(backend)}", backend, count=4)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    # the same dataset spelled another way: relative, through ".."
    second = settings_for(f"../run{suffix(backend)}", backend, overwrite=overwrite)
    async with open_stream(settings) as first:
        await first.append(frame(0))
        await first.flush()
        with pytest.raises(FileExistsError, match=f"being written by process {os.getpid()}"):
            async with open_stream(second):
                pass
        for i in range(1, 4):
            await first.append(frame(i))
    np.testing.assert_array_equal(read(settings), expected(0, 4))
    assert sorted(os.listdir(tmp_path)) == [f"run{suffix(backend)}", "sub"]


HOLDER = textwrap.dedent("""
    import sys, numpy as np
    from ome_stream import AcquisitionSettings, create_stream, dims_from_standard_axes
    backend, root = sys.argv[1], sys.argv[2]
    settings = AcquisitionSettings(root_path=root, format=backend, dtype="uint16",
        dimensions=dims_from_standard_axes({"t": 4, "y": 16, "x": 16}))
    with create_stream(settings) as stream:
        stream.append(np.full((16, 16), 1, "uint16"))
        stream.flush()
        print("open", flush=True)
        sys.stdin.readline()
""")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_lock_spans_processes_and_dies_with_its_holder(tmp_path: Path, backend: str) -> None:
    root = tmp_path / f"run{suffix(backend)}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, backend, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "open"
        for overwrite in (False, True):
            second = settings_for(root, backend, overwrite=overwrite)
            with (
                pytest.raises(FileExistsError, match=f"being written by process {child.pid}"),
                create_stream(second),
            ):
                pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    # the kernel released the lock with the process: the crashed dataset can be replaced
    settings = settings_for(root, backend, overwrite=True)
    anyio.run(write, settings, 5)
    np.testing.assert_array_equal(read(settings), expected(5))


# ------------------------------------------------------------------ 9. deleted mid-run
@pytest.mark.anyio
@pytest.mark.parametrize("at", ["flush", "exit"])
@pytest.mark.parametrize("backend", ZARR)
async def test_dataset_deleted_mid_run_is_an_error(tmp_path: Path, backend: str, at: str) -> None:
    """The writes after the deletion recreate chunk files, but the arrays are gone: the
    next flush (or the exit) raises WriterError instead of reporting success."""
    settings = settings_for(tmp_path / "run.ome.zarr", backend, count=8)
    with anyio.fail_after(60), pytest.raises(WriterError, match="deleted or replaced"):  # noqa: PT012
        async with open_stream(settings) as stream:
            for i in range(3):
                await stream.append(frame(i))
            await stream.flush()
            shutil.rmtree(settings.output_path)
            for i in range(3, 6):
                await stream.append(frame(i))
            if at == "flush":
                with pytest.raises(WriterError, match="deleted or replaced"):
                    await stream.flush()
                with pytest.raises(WriterError):  # and from then on
                    await stream.append(frame(6))


# ------------------------------------------------------------------ 10. cancelled open
@pytest.mark.parametrize("backend", BACKENDS)
def test_cancelling_the_open_releases_everything(tmp_path: Path, backend: str) -> None:
    """Cancelled at many points of the open, over an old dataset: no backend thread and no
    file stays open, the lock is released, and the old dataset is intact unless the new
    one had opened (then the new one is complete)."""
    old = settings_for(tmp_path / f"run{suffix(backend)}", backend, count=2)
    anyio.run(write, old, 0, 2)
    new = old.model_copy(update={"overwrite": True})
    baseline = set(ome_stream_threads())
    outcomes = set()
    for checkpoints in (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377):
        for library in ("asyncio", "trio"):
            appended = -1  # -1: the stream never opened

            async def open_then_cancel(n: int = checkpoints) -> None:
                nonlocal appended
                with anyio.CancelScope() as scope:

                    async def cancel_later() -> None:
                        for _ in range(n):
                            await anyio.lowlevel.checkpoint()
                        scope.cancel()

                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(cancel_later)
                        async with open_stream(new) as stream:
                            appended = 0
                            for i in (10, 11):
                                await stream.append(frame(i))
                                appended += 1
                            await anyio.sleep_forever()

            anyio.run(open_then_cancel, backend=library)
            assert set(ome_stream_threads()) <= baseline, ome_stream_threads()
            assert not open_files_under(tmp_path)
            assert sorted(os.listdir(tmp_path)) == [f"run{suffix(backend)}"]
            data = read(old)
            if appended < 0:  # the old dataset, intact
                np.testing.assert_array_equal(data, expected(0, 2))
                outcomes.add("cancelled while opening")
            else:  # the new one: what was appended before the cancellation, then zeros
                for i in range(appended):
                    np.testing.assert_array_equal(data[i], frame(10 + i))
                assert data.shape[0] == 2 and not data[appended:].any()
                outcomes.add("opened")
            anyio.run(write, old.model_copy(update={"overwrite": True}), 0, 2)  # lock released
    assert "cancelled while opening" in outcomes


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_unbounded_acquisition_without_frames_closes_cleanly(
    tmp_path: Path, backend: str
) -> None:
    settings = settings_for(tmp_path / f"empty{suffix(backend)}", backend, count=None)
    async with open_stream(settings):
        pass
    if backend == "tifffile":  # a TIFF cannot hold zero images: no file is left
        assert os.listdir(tmp_path) == []
    else:
        assert read(settings).shape == (0, *SHAPE)
        doc = json.loads((Path(settings.output_path) / "zarr.json").read_text())
        assert doc["attributes"]["ome"]["version"] == "0.5"


# ------------------------------------------------------------------ 7. flush on TIFF
def reordered_settings(root: Path | str, compression: str | None = None) -> AcquisitionSettings:
    """Acquired t, z, c; stored c, t, z: frame (t, z, c=1) belongs far down the file."""
    return AcquisitionSettings(
        root_path=root,
        format="tifffile",
        dtype="uint16",
        compression=compression,
        storage_order=["c", "t", "z", "y", "x"],
        dimensions=dims_from_standard_axes({"t": 2, "z": 3, "c": 2, "y": 16, "x": 16}),
    )


def page_of(i: int) -> int:
    """The page of acquisition frame ``i`` (t, z, c) in storage order (c, t, z)."""
    t, rest = divmod(i, 6)
    z, c = divmod(rest, 2)
    return c * 6 + t * 3 + z


def tiff_pages(path: Path | str) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return np.stack([page.asarray() for page in tif.pages])


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [None, "zstd"])
async def test_flush_writes_reordered_tiff_frames(tmp_path: Path, compression: str | None) -> None:
    """After flush every accepted frame is a page of the file (read by another reader
    while the stream is open), compressed or not; the closed file is exact."""
    settings = reordered_settings(tmp_path / "r.ome.tiff", compression)
    async with open_stream(settings) as stream:
        for i in range(5):
            await stream.append(frame(i))
        await stream.flush()
        pages = tiff_pages(settings.output_path)
        for i in range(5):
            np.testing.assert_array_equal(pages[page_of(i)], frame(i), err_msg=f"frame {i}")
        for i in range(5, 12):
            await stream.append(frame(i))
    pages = tiff_pages(settings.output_path)
    assert len(pages) == 12
    for i in range(12):
        np.testing.assert_array_equal(pages[page_of(i)], frame(i))
    with tifffile.TiffFile(settings.output_path) as tif:
        assert tif.is_ome and tif.series[0].shape == (2, 2, 3, 16, 16)
        if compression:  # frames in order are compressed; those placed later are not
            assert tif.pages[0].compression.name == "ZSTD"


FLUSH_THEN_WAIT = textwrap.dedent("""
    import sys, time, numpy as np
    from ome_stream import AcquisitionSettings, create_stream, dims_from_standard_axes
    settings = AcquisitionSettings(root_path=sys.argv[1], format="tifffile", dtype="uint16",
        compression=None if sys.argv[2] == "none" else sys.argv[2],
        storage_order=["c", "t", "z", "y", "x"],
        dimensions=dims_from_standard_axes({"t": 2, "z": 3, "c": 2, "y": 16, "x": 16}))
    with create_stream(settings) as stream:
        for i in range(5):
            stream.append(np.full((16, 16), i + 1, "uint16"))
        stream.flush()
        print("flushed", flush=True)
        time.sleep(600)
""")


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_kill_9_right_after_flush_loses_nothing_on_reordered_tiff(
    tmp_path: Path, compression: str
) -> None:
    root = tmp_path / "r.ome.tiff"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with subprocess.Popen(
        [sys.executable, "-c", FLUSH_THEN_WAIT, str(root), compression],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "flushed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    pages = tiff_pages(root)
    for i in range(5):
        np.testing.assert_array_equal(pages[page_of(i)], frame(i), err_msg=f"frame {i}")
    placed = {page_of(i) for i in range(5)}
    for number, page in enumerate(pages):
        if number not in placed:
            assert not page.any(), f"page {number} holds data no frame was appended for"


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_cancelled_after_the_old_dataset_was_moved_aside_restores_it(
    tmp_path: Path, backend: str
) -> None:
    """The cancellation lands once the old dataset is in its hidden place, while the new
    one opens: the old dataset comes back, intact, and nothing else is left."""
    old = settings_for(tmp_path / f"run{suffix(backend)}", backend, count=2)
    await write(old, 0, 2)
    new = old.model_copy(update={"overwrite": True})
    restored = 0
    for _ in range(10):
        opened = False
        with anyio.fail_after(60), anyio.CancelScope() as scope:

            async def cancel_once_moved_aside(scope: anyio.CancelScope = scope) -> None:
                # polling the directory: the move happens in another thread, no event
                while not any(".ome-stream-old-" in name for name in os.listdir(tmp_path)):
                    await anyio.lowlevel.checkpoint()
                scope.cancel()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(cancel_once_moved_aside)
                async with open_stream(new):
                    opened = True
                    await anyio.sleep_forever()
        assert sorted(os.listdir(tmp_path)) == [f"run{suffix(backend)}"]
        assert not open_files_under(tmp_path)
        if not opened:
            np.testing.assert_array_equal(read(old), expected(0, 2))
            restored += 1
        else:  # the open won the race: the new, empty dataset replaced the old one
            assert not read(old).any()
            await write(old.model_copy(update={"overwrite": True}), 0, 2)
    assert restored, "the cancellation never landed while the new dataset opened"
