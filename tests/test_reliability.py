"""No accepted frame lost: cancellation at random points, real storage faults (a full
filesystem, a read-only filesystem, storage removed under the writer), kill -9, on every
backend. Faults are produced for real on small tmpfs mounts the tests create; where this
machine does not allow mounting, those tests are skipped and say why."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import numpy as np
import pytest
import tifffile
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ome_stream import (
    AcquisitionSettings,
    WriterError,
    available_backends,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)

BACKENDS = [
    b
    for b in ("tensorstore", "zarr-python", "tifffile", "acquire-zarr")
    if b in available_backends()
]
SHAPE = (32, 32)


def frame(i: int) -> np.ndarray:
    """Frame i: every pixel holds i, so any frame read back tells where it came from."""
    return np.full(SHAPE, i, dtype="uint16")


def make_settings(root: Path, backend: str, count: int | None = 40) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=root / ("data.ome.tiff" if backend == "tifffile" else "data.ome.zarr"),
        format=backend,
        dtype="uint16",
        overwrite=True,
        max_buffer_bytes=8 * SHAPE[0] * SHAPE[1] * 2,  # 8 frames: storage paces the producer
        dimensions=dims_from_standard_axes({"t": count, "y": SHAPE[0], "x": SHAPE[1]}),
    )


def read_frames(settings: AcquisitionSettings) -> np.ndarray:
    """Everything readable at the output, frame by frame (a missing zarr chunk reads 0)."""
    if settings.file_format == "ome-tiff":
        pages = []
        with tifffile.TiffFile(settings.output_path) as tif:
            for page in tif.pages:
                try:
                    pages.append(page.asarray())
                except ValueError:  # the page being written when storage failed
                    break
        return np.stack(pages) if pages else np.zeros((0, *SHAPE), "uint16")
    return np.asarray(zarr.open_array(f"{settings.output_path}/0", mode="r")[...])


# ------------------------------------------------------------------ cancellation
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    backend=st.sampled_from(BACKENDS),
    cancel_after=st.floats(0.0, 0.03),
    async_lib=st.sampled_from(["asyncio", "trio"]),
)
def test_cancelled_producer_loses_nothing_it_appended(
    tmp_path_factory: pytest.TempPathFactory, backend: str, cancel_after: float, async_lib: str
) -> None:
    root = tmp_path_factory.mktemp("cancel")
    settings = make_settings(root, backend, count=200)
    appended = 0

    async def produce() -> None:
        nonlocal appended
        with anyio.CancelScope() as scope:
            async with open_stream(settings) as stream:
                # the deadline counts from the open stream: cancellation lands among appends
                scope.deadline = anyio.current_time() + cancel_after
                for i in range(200):
                    await stream.append(frame(i))
                    appended += 1
                    await anyio.lowlevel.checkpoint()

    anyio.run(produce, backend=async_lib)
    data = read_frames(settings)
    for i in range(appended):
        np.testing.assert_array_equal(data[i], frame(i))
    assert not data[appended:].any()


# ------------------------------------------------------------------ real storage faults
@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test (needs the right to mount, as root here)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({result.stderr.strip()}): the real-fault tests need it"
        )
    try:
        yield mount
    finally:
        # a plain umount fails while any file there is still open: that checks that the
        # writer closed everything
        closed = subprocess.run(["umount", str(mount)], capture_output=True, check=False)
        if closed.returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)
            pytest.fail(f"files under {mount} were left open: {closed.stderr!r}")


async def append_until_error(settings: AcquisitionSettings, frames: int) -> tuple[int, str]:
    """Append until storage fails; return frames appended and where the error surfaced."""
    appended = 0
    with anyio.fail_after(60):  # a fault must never hang the producer
        try:
            async with open_stream(settings) as stream:
                for i in range(frames):
                    await stream.append(frame(i))
                    appended += 1
                await stream.flush()
        except WriterError as err:
            return appended, "raised" if err.__cause__ is not None else "no cause"
    return appended, "no error"


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_full_filesystem(small_fs: Path, backend: str) -> None:
    settings = make_settings(small_fs, backend, count=None)  # 2 KiB frames, 1 MiB of room
    appended, outcome = await append_until_error(settings, 2000)
    assert outcome == "raised", "filling the filesystem must raise WriterError"
    assert appended < 2000
    # the error surfaced within a few frames of the failure: the buffer is small
    data = read_frames(settings) if Path(settings.output_path).exists() else np.zeros((0,))
    written = [i for i, plane in enumerate(data) if plane.any()]
    for i in written:
        np.testing.assert_array_equal(data[i], frame(i))  # what is there is exact
    if backend != "acquire-zarr":  # acquire-zarr holds frames in native buffers of its own
        # our buffer (8 frames) + writes in flight (at most 32 small blocks)
        assert appended - len(written) <= 8 + 32


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("tensorstore", "tifffile")])
def test_full_filesystem_through_the_sync_facade(small_fs: Path, backend: str) -> None:
    """The facade's ``append`` queues frames ahead of the loop; filling the disk still
    reaches the caller as WriterError (at an append or at close), within the budget."""
    settings = make_settings(small_fs, backend, count=None)
    appended, outcome = 0, []

    def produce() -> None:
        nonlocal appended
        try:
            with create_stream(settings) as stream:
                for i in range(2000):
                    stream.append(frame(i))
                    appended += 1
        except WriterError as err:
            outcome.append(err)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(60)
    assert not producer.is_alive(), "a full disk must never hang the sync producer"
    assert outcome and outcome[0].__cause__ is not None, "it must raise WriterError"
    assert appended < 2000
    data = read_frames(settings) if Path(settings.output_path).exists() else np.zeros((0,))
    written = [i for i, plane in enumerate(data) if plane.any()]
    for i in written:
        np.testing.assert_array_equal(data[i], frame(i))  # what is there is exact
    assert appended - len(written) <= 8 + 32  # the buffer and writes in flight, no more


@pytest.mark.anyio
@pytest.mark.parametrize("backend", BACKENDS)
async def test_read_only_filesystem_at_open(small_fs: Path, backend: str) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        with anyio.fail_after(60), pytest.raises(WriterError, match="cannot create"):
            async with open_stream(make_settings(small_fs, backend)):
                pass
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)


@pytest.mark.anyio
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b in ("tensorstore", "zarr-python")])
async def test_filesystem_turns_read_only_mid_acquisition(small_fs: Path, backend: str) -> None:
    """(A TIFF file stays open while it is written; Linux refuses to remount under it.)"""
    settings = make_settings(small_fs, backend, count=40)
    with anyio.fail_after(60):
        with pytest.raises(WriterError):  # noqa: PT012
            async with open_stream(settings) as stream:
                for i in range(10):
                    await stream.append(frame(i))
                await stream.flush()
                subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
                for i in range(10, 40):
                    await stream.append(frame(i))
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    data = read_frames(settings)
    for i in range(10):
        np.testing.assert_array_equal(data[i], frame(i))


@pytest.mark.anyio
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "acquire-zarr"])
async def test_storage_removed_under_the_writer(tmp_path: Path, backend: str) -> None:
    """The output is deleted and something else put in its place.

    zarr: the next writes fail. TIFF: POSIX lets writes to a removed file succeed (they go
    to the unlinked inode), so the failure surfaces at close, when the OME-XML cannot be
    placed.
    """
    settings = make_settings(tmp_path, backend, count=40)
    output = Path(settings.output_path)
    with anyio.fail_after(60):
        with pytest.raises(WriterError):  # noqa: PT012
            async with open_stream(settings) as stream:
                for i in range(5):
                    await stream.append(frame(i))
                await stream.flush()
                if output.is_dir():  # zarr: a file where the dataset directory was
                    shutil.rmtree(output)
                    output.write_text("not a dataset")
                else:  # TIFF: a directory where the file was (writes go to the unlinked
                    output.unlink()  # file; placing the OME-XML at close fails)
                    output.mkdir()
                for i in range(5, 40):
                    await stream.append(frame(i))


# ------------------------------------------------------------------ kill -9
CHILD = textwrap.dedent("""
    import sys, time, numpy as np
    from ome_stream import AcquisitionSettings, dims_from_standard_axes, create_stream
    backend, root = sys.argv[1], sys.argv[2]
    settings = AcquisitionSettings(root_path=root, format=backend, dtype="uint16",
        dimensions=dims_from_standard_axes({"t": None, "y": 32, "x": 32},
                                           shard_shapes={"t": 4}))
    with create_stream(settings) as stream:
        for i in range(1_000_000):
            stream.append(np.full((32, 32), i % 60000, "uint16"))
            if i == 23:
                stream.flush()
                print("flushed", flush=True)
            time.sleep(0.001)
""")


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "acquire-zarr"])
def test_kill_9_mid_acquisition_keeps_complete_objects(tmp_path: Path, backend: str) -> None:
    suffix = ".ome.tiff" if backend == "tifffile" else ".ome.zarr"
    root = tmp_path / f"crash{suffix}"
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, backend, str(root)], stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "flushed"
        time.sleep(0.3)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    if backend == "tifffile":
        with tifffile.TiffFile(root) as tif:
            pages = [page.asarray() for page in tif.pages]
        assert len(pages) >= 24
        for i, page in enumerate(pages):
            np.testing.assert_array_equal(page, frame(i))
        return
    # zarr: the dataset opens; every complete shard reads back exactly; the array may
    # extend past the data (it grows ahead and is trimmed only at close)
    group = json.loads((root / "zarr.json").read_text())
    assert group["attributes"]["ome"]["version"] == "0.5"
    data = np.asarray(zarr.open_array(str(root / "0"), mode="r")[...])
    assert data.shape[0] >= 24
    for i in range(24):  # flushed before the kill
        np.testing.assert_array_equal(data[i], frame(i))
    for i, plane in enumerate(data):
        assert not plane.any() or (plane == frame(i)).all()


@pytest.mark.anyio
async def test_tensorstore_chunks_are_renamed_into_place_without_fsync_or_lock_files(
    tmp_path: Path,
) -> None:
    """tensorstore on local files: no per-chunk fsync or lock file, still whole chunks.

    Durability is the operating system's, as on every other backend (docs/reliability.md);
    the kill -9 test above checks that each chunk still appears whole or not at all.
    """
    settings = make_settings(tmp_path, "tensorstore")
    async with open_stream(settings) as stream:
        context = stream._backend._context  # type: ignore[union-attr]
        assert context["file_io_sync"].to_json() is False
        assert context["file_io_locking"].to_json() == {"mode": "none"}
        for i in range(40):
            await stream.append(frame(i))
        await stream.flush()
        # every chunk renamed into place: no temporary or lock file is left next to one
        names = [p.name for p in Path(settings.output_path).rglob("*") if p.is_file()]
        assert not [n for n in names if "lock" in n], names
    np.testing.assert_array_equal(read_frames(settings), np.stack([frame(i) for i in range(40)]))
