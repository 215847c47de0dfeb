"""OME-TIFF pages of large frames, written past the page cache (``O_DIRECT``).

Frames of at least ``DIRECT_MIN_BYTES`` in whole 4 KiB blocks are written by the file
itself at a block-aligned offset; every other frame goes through tifffile as before. Each
file is read back with tifffile and its OME-XML validated with ome-types.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest
import tifffile
from ome_types import from_xml, validate_xml

from _settings import series
from conftest import make_frames
from ome_stream import AcquisitionSettings, dims_from_standard_axes, open_stream
from ome_stream.backends.tifffile import DIRECT_ALIGN, DIRECT_MIN_BYTES


def read_back(path: Path) -> tuple[np.ndarray, list[int]]:
    """The pixels of every page, and each page's data offset."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
        assert xml is not None
        validate_xml(xml)
        assert from_xml(xml).images[0].pixels.size_t == len(tif.pages)
        offsets = [page.dataoffsets[0] for page in tif.pages]
        return np.stack([page.asarray() for page in tif.pages]), offsets


def page_aligned(frames: np.ndarray) -> np.ndarray:
    """A copy of ``frames`` in page-aligned memory (as a camera's DMA buffers may be)."""
    buffer = mmap.mmap(-1, frames.nbytes)
    aligned = np.frombuffer(buffer, frames.dtype).reshape(frames.shape)
    aligned[:] = frames
    return aligned


@pytest.mark.anyio
@pytest.mark.parametrize("source", ["copied", "page-aligned, not copied"])
async def test_large_frames_are_written_block_aligned(tmp_path: Path, source: str) -> None:
    shape = (1024, 2048)  # 4 MiB of uint16: the smallest frame written directly
    frames = make_frames(5, shape)
    assert frames[0].nbytes >= DIRECT_MIN_BYTES
    given = frames if source == "copied" else page_aligned(frames)
    target = tmp_path / "big.ome.tiff"
    async with open_stream(series(target, 5, shape)) as stream:
        view = stream.view()
        for i, frame in enumerate(given):
            await stream.append(frame, copy=source == "copied")
            if i == 2:  # the live view reads pages back through the page cache
                await stream.flush()
                np.testing.assert_array_equal(await view.read(slice(0, 3)), frames[:3])
    data, offsets = read_back(target)
    np.testing.assert_array_equal(data, frames)
    assert all(offset % DIRECT_ALIGN == 0 for offset in offsets), offsets


@pytest.mark.anyio
async def test_frames_of_partial_blocks_keep_tifffiles_layout(tmp_path: Path) -> None:
    shape = (1000, 2100)  # 4,200,000 bytes: not whole 4 KiB blocks
    frames = make_frames(3, shape)
    target = tmp_path / "odd.ome.tiff"
    async with open_stream(series(target, 3, shape)) as stream:
        for frame in frames:
            await stream.append(frame)
    data, offsets = read_back(target)
    np.testing.assert_array_equal(data, frames)
    assert any(offset % DIRECT_ALIGN for offset in offsets), offsets


@pytest.mark.anyio
async def test_large_frames_with_skips_and_a_reordering_storage_order(tmp_path: Path) -> None:
    shape = (1024, 2048)
    settings = AcquisitionSettings(
        root_path=tmp_path / "r.ome.tiff",
        dtype="uint16",
        storage_order=["c", "t", "y", "x"],
        dimensions=dims_from_standard_axes({"t": 3, "c": 2, "y": shape[0], "x": shape[1]}),
    )
    frames = make_frames(6, shape)
    async with open_stream(settings) as stream:
        for i, frame in enumerate(frames):
            if i == 3:
                await stream.skip()
            else:
                await stream.append(frame)
    with tifffile.TiffFile(tmp_path / "r.ome.tiff") as tif:
        validate_xml(tif.ome_metadata)
        data = tif.asarray()
    expected = frames.copy()
    expected[3] = 0
    # acquired t-major (t, c), stored c-major: page = c * 3 + t
    np.testing.assert_array_equal(
        data.reshape(2, 3, *shape), expected.reshape(3, 2, *shape).transpose(1, 0, 2, 3)
    )


@pytest.mark.anyio
async def test_a_tifffile_writing_empty_pages_otherwise_still_gets_the_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct path takes the place of the one zero byte tifffile writes at the end of
    an empty page's data. A tifffile that writes those zeros otherwise (here: all of them
    at once) must still get every frame's pixels, at the page's data, in the kill-safe
    order."""

    def write_all_zeros(self: tifffile.FileHandle, size: int, /) -> int:
        return self.write(b"\0" * size) if size > 0 else 0

    monkeypatch.setattr(tifffile.FileHandle, "write_empty", write_all_zeros)
    shape = (1024, 2048)
    frames = make_frames(4, shape, seed=3)
    target = tmp_path / "other.ome.tiff"
    async with open_stream(series(target, 4, shape)) as stream:
        for frame in frames:
            await stream.append(frame)
    data, _ = read_back(target)
    np.testing.assert_array_equal(data, frames)
