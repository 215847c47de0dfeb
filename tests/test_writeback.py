"""Stored data goes to the kernel's write-back at once: zarr objects of 512 KiB and more,
and OME-TIFF pages written through the page cache, every 512 KiB.

The write-back is a hint (``sync_file_range``): what a test can check is that every
object of the dataset was opened and handed over (a wrong path is not opened and is not
counted), that nothing else was, and that the data is exactly what was appended.
"""

from __future__ import annotations

import sys
from concurrent.futures import Future
from pathlib import Path

import anyio
import numpy as np
import pytest
import tensorstore as ts
import tifffile
import zarr

from _settings import series
from ome_stream import AcquisitionSettings, Dimension, open_stream
from ome_stream.backends._writeback import MIN_BYTES, WriteBack
from ome_stream.backends.tifffile import _FileWriter
from ome_stream.layout import Layout

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="sync_file_range is Linux's"
)

FRAME = (256, 256)  # uint16: 128 KiB a frame
SHARD_FRAMES = MIN_BYTES // (FRAME[0] * FRAME[1] * 2)  # the smallest shard started early
FRAMES = 3 * SHARD_FRAMES + SHARD_FRAMES // 2  # three whole shards, a partial one at close


def sharded(root: Path, backend: str, shard_frames: int = SHARD_FRAMES) -> AcquisitionSettings:
    return AcquisitionSettings(
        root_path=str(root),
        dimensions=[
            Dimension(name="t", count=FRAMES, chunk_size=1, shard_size_chunks=shard_frames),
            Dimension(name="y", count=FRAME[0], chunk_size=FRAME[0], type="space"),
            Dimension(name="x", count=FRAME[1], chunk_size=FRAME[1], type="space"),
        ],
        dtype="uint16",
        format={"name": "ome-zarr", "backend": backend},
    )


def frames() -> np.ndarray:
    rng = np.random.default_rng(17)
    return rng.integers(0, 4096, (FRAMES, *FRAME), dtype=np.uint16)


async def write(settings: AcquisitionSettings, data: np.ndarray) -> WriteBack | None:
    async with open_stream(settings) as stream:
        writeback: WriteBack | None = stream._backend._writeback  # type: ignore[union-attr]
        for frame in data:
            await stream.append(frame)
    return writeback


def wait_ended(writeback: WriteBack) -> None:
    thread = writeback._thread
    assert thread is not None, "no write-back was started"
    thread.join(10)
    assert not thread.is_alive(), "the write-back thread did not end after close"


@pytest.mark.parametrize("backend", ["tensorstore", "zarr-python"])
def test_every_shard_is_handed_to_the_write_back_once_stored(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "shards.ome.zarr"
    data = frames()
    writeback = anyio.run(write, sharded(root, backend), data)

    assert writeback is not None
    wait_ended(writeback)
    shards = sorted(p for p in (root / "0" / "c").rglob("*") if p.is_file())
    assert len(shards) == -(-FRAMES // SHARD_FRAMES) == 4
    assert writeback.started == len(shards)
    # read back by the other engine: the hint changed nothing in what was stored
    other = "tensorstore" if backend == "zarr-python" else "zarr-python"
    if other == "zarr-python":
        stored = zarr.open_array(root / "0", mode="r")[:]
    else:
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(root / "0")}}
        stored = ts.open(spec, read=True).result().read().result()
    np.testing.assert_array_equal(stored, data)


def test_small_objects_and_object_storage_are_left_to_the_kernel(tmp_path: Path) -> None:
    small = sharded(tmp_path / "small.ome.zarr", "tensorstore", shard_frames=SHARD_FRAMES // 2)
    assert WriteBack.for_layout(Layout(small)) is None
    writeback = anyio.run(write, small, frames())
    assert writeback is None

    remote = sharded(tmp_path / "x.ome.zarr", "tensorstore").model_copy(
        update={"root_path": "s3://bucket/x.ome.zarr"}
    )
    assert WriteBack.for_layout(Layout(remote)) is None


def test_an_object_gone_from_disk_is_passed_over(tmp_path: Path) -> None:
    root = tmp_path / "gone.ome.zarr"
    writeback = WriteBack.for_layout(Layout(sharded(root, "tensorstore")))
    assert writeback is not None
    (root / "0" / "c" / "1" / "0").mkdir(parents=True)
    (root / "0" / "c" / "1" / "0" / "0").write_bytes(b"shard")
    shape = (SHARD_FRAMES, *FRAME)
    for first in (0, SHARD_FRAMES):  # shard 0 was never written, shard 1 was
        done: Future[None] = Future()
        writeback.when_stored(done, 0, (first,), shape)
        done.set_result(None)
    failed: Future[None] = Future()
    writeback.when_stored(failed, 0, (SHARD_FRAMES,), shape)
    failed.set_exception(OSError("disk full"))  # a failed write is not written out
    writeback.close()
    wait_ended(writeback)
    assert writeback.started == 1


@pytest.mark.parametrize(("compression", "frame"), [("zstd", (512, 512)), (None, (64, 64))])
def test_buffered_tiff_pages_are_written_out_as_they_come(
    tmp_path: Path, compression: str | None, frame: tuple[int, int]
) -> None:
    """Compressed pages, and frames too small for direct writes, go through the page
    cache; the file hands what it has to the kernel's write-back every 512 KiB."""
    target = tmp_path / f"{compression}.ome.tiff"
    count = 2 * MIN_BYTES // (frame[0] * frame[1] * 2) + 3  # about a MiB of pixels
    data = np.random.default_rng(5).integers(0, 4096, (count, *frame), dtype=np.uint16)
    handed: list[int] = []
    write_out = _FileWriter._write_page

    def watched(writer: _FileWriter, page: np.ndarray | None) -> None:
        write_out(writer, page)
        assert writer._file is not None
        handed.append(writer._file._written_out)

    async def main() -> None:
        async with open_stream(series(target, count, frame, compression=compression)) as stream:
            for image in data:
                await stream.append(image)

    with pytest.MonkeyPatch.context() as patch:  # records, never changes, what is written
        patch.setattr(_FileWriter, "_write_page", watched)
        anyio.run(main)
    steps = [b - a for a, b in zip([0, *handed], handed, strict=False) if b != a]
    assert steps, "nothing was handed to the write-back"
    assert all(step >= MIN_BYTES for step in steps), steps
    assert handed[-1] > target.stat().st_size - 2 * MIN_BYTES
    with tifffile.TiffFile(target) as tif:
        np.testing.assert_array_equal(np.stack([p.asarray() for p in tif.pages]), data)
