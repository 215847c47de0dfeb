"""OME-TIFF through tifffile, one dedicated writer thread per file.

Every frame is written as its own BigTIFF page (IFD), in storage order, so a file is a
valid TIFF after every page: a process killed mid-acquisition leaves every finished page
readable. The OME-XML is built with ome-types when the acquisition closes and placed in
the first page's ImageDescription (UTF-8), replacing a placeholder. The event loop only
awaits futures; all TIFF I/O and XML serialisation happens in the writer threads.
The pixels of large uncompressed frames bypass the page cache (``O_DIRECT``, see
:class:`_FullWrites`); everything else is written through it.

Pages arrive from the stream out of order by at most a few frames (writes in flight);
the writer thread holds early pages until the page before them has been written, and
writes zero pages for skipped frames.

When the storage order permutes the acquisition order, frames arrive far ahead of their
page. They are never held in memory: the pages before such a frame are written at once as
uncompressed, all-zero pages (sparse on disk), and a frame that belongs to one of them is
later written in place into its pixel data. Every frame is therefore in the file as soon
as its write returns (``flush()`` tells the truth); those in-place pages are stored
uncompressed even when the other pages are compressed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
import queue
import struct
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np
import tifffile

from ome_stream.backends._futures import wait_future
from ome_stream.backends._writeback import MIN_BYTES as WRITE_OUT_BYTES
from ome_stream.backends._writeback import start_writeback
from ome_stream.backends.base import Backend
from ome_stream.metadata.ome_xml import COMPANION_INDEX, tiff_documents, tiff_files

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ome_stream.layout import AcquisitionRecord, Layout

__all__ = ["TiffBackend"]

PLACEHOLDER = "ome-stream: acquisition in progress; OME-XML is written when it closes"
_CODECS = {"zlib": "zlib", "zstd": "zstd", "lzw": "lzw"}


#: pixel data of at least this size, in whole blocks, bypasses the page cache (smaller
#: direct writes wait on the disk one by one: 1 MiB frames were written slower than cached)
DIRECT_MIN_BYTES = 4 << 20
#: alignment of direct writes: file offset, length and memory (a page covers every device)
DIRECT_ALIGN = 4096


def _aligned(frame: np.ndarray) -> bool:
    address: int = frame.__array_interface__["data"][0]
    return address % DIRECT_ALIGN == 0


class _BouncePool:
    """Page-aligned buffers for direct writes, shared by every file's writer thread.

    At most ``keep`` idle buffers are kept (the writer threads writing at once need one
    each); one file per position must not mean one buffer per position.
    """

    def __init__(self, keep: int = 2) -> None:
        self._idle: list[mmap.mmap] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self, size: int) -> mmap.mmap:
        """An idle buffer of ``size`` bytes, or a new one."""
        with self._lock:
            for index, buffer in enumerate(self._idle):
                if len(buffer) == size:
                    return self._idle.pop(index)
        return mmap.mmap(-1, size)

    def give(self, buffer: mmap.mmap) -> None:
        """Return a buffer taken with :meth:`take`."""
        with self._lock:
            self._idle.append(buffer)
            surplus, self._idle = self._idle[: -self._keep], self._idle[-self._keep :]
        for old in surplus:
            old.close()


_BOUNCES = _BouncePool()


class _FullWrites(io.FileIO):
    """An unbuffered file whose ``write`` writes everything or raises.

    A raw write may be short without an error (a disk filling up); tifffile does not check,
    which would leave a page cut short and the file's IFD chain pointing past its end.

    It can also hold back the one write of the IFD chain's link (:meth:`hold_link`):
    tifffile links the previous IFD to the new page *before* it writes the page's pixels
    and IFD, so a process killed in between would leave the chain pointing at a page that
    is not there yet.

    And it can write a page's pixels past the page cache (:meth:`place_pixels`): tifffile
    is asked for an empty page, block-aligned, and the one write that would end its pixel
    data is replaced by the frame, written with ``O_DIRECT`` from an aligned buffer.
    """

    _link_at: int | None = None
    _link: bytes | None = None
    _written_out = 0  # bytes from the start handed to the kernel's write-back
    _direct: int | None = None
    _bounce: mmap.mmap | None = None  # holding the kept frame's copy, if copied
    _pixels: memoryview | None = None  # the kept frame's bytes

    def open_direct(self) -> bool:
        """Open the file a second time for direct writes; False where that is refused."""
        flag = getattr(os, "O_DIRECT", 0)
        if flag and self._direct is None:
            with contextlib.suppress(OSError):
                self._direct = os.open(self.name, os.O_WRONLY | os.O_CLOEXEC | flag)
        return self._direct is not None

    def close(self) -> None:
        direct, self._direct = self._direct, None
        try:
            self.pixels_placed()
            if direct is not None:
                os.close(direct)
        finally:
            super().close()

    def place_pixels(self, frame: np.ndarray) -> bool:
        """Keep ``frame`` to write in place of the data of the next empty page.

        False (nothing kept) when the frame cannot be written directly: no direct file, or
        a size that is not whole blocks. A frame in page-aligned memory is written from
        there; any other is copied into an aligned buffer first.
        """
        size = frame.nbytes
        if self._direct is None or size % DIRECT_ALIGN or size < DIRECT_MIN_BYTES:
            return False
        native = frame.dtype.newbyteorder("=")
        if frame.flags.c_contiguous and frame.dtype == native and _aligned(frame):
            self._pixels = frame.data.cast("B")
            return True
        self._bounce = _BOUNCES.take(size)
        target = np.frombuffer(self._bounce, native, frame.size).reshape(frame.shape)
        np.copyto(target, frame)
        del target
        self._pixels = memoryview(self._bounce)
        return True

    def pixels_placed(self) -> bool:
        """Whether the frame kept by :meth:`place_pixels` was written (and forget it)."""
        placed = self._pixels is None
        if self._pixels is not None:
            self._pixels.release()
            self._pixels = None
        bounce, self._bounce = self._bounce, None
        if bounce is not None:
            _BOUNCES.give(bounce)
        return placed

    def _write_pixels(self, end: int) -> None:
        """Write the kept frame so that it ends at ``end``, directly where possible."""
        assert self._pixels is not None
        pixels = self._pixels
        at = end - len(pixels)
        done = 0
        while self._direct is not None and done < len(pixels) and done % DIRECT_ALIGN == 0:
            with pixels[done:] as rest:
                try:
                    written = os.pwrite(self._direct, rest, at + done)
                except OSError as err:
                    if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    os.close(self._direct)  # the file system refuses direct writes
                    self._direct = None
                    break
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.name))
            done += written
        with pixels[done:] as rest:  # what direct writes did not take, buffered
            self._pwrite_all(rest, at + done)
        pixels.release()
        self._pixels = None

    def write_at(self, offset: int, frame: np.ndarray) -> None:
        """Write ``frame``'s bytes (native order, C order) at ``offset``, buffered."""
        data = np.ascontiguousarray(frame, frame.dtype.newbyteorder("="))
        with data.data.cast("B") as view:
            self._pwrite_all(view, offset)

    def _pwrite_all(self, data: memoryview, offset: int) -> None:
        done = 0
        while done < len(data):
            written = os.pwrite(self.fileno(), data[done:], offset + done)
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.name))
            done += written

    def write_out(self) -> None:
        """Start writing the file's new bytes to the disk once there are enough of them.

        Buffered pages stay dirty in the page cache until the kernel's thresholds or a
        sync; from ``WRITE_OUT_BYTES`` (512 KiB) of new bytes on, they are handed to the
        kernel's write-back, which does not wait for the disk.
        """
        end = self.tell()
        if end - self._written_out >= WRITE_OUT_BYTES and start_writeback(
            self.fileno(), self._written_out, end - self._written_out
        ):
            self._written_out = end

    def hold_link(self, offset: int) -> None:
        """Keep back the next write at ``offset`` (the chain's link) until :meth:`link`."""
        self._link_at, self._link = offset, None

    def link(self) -> None:
        """Write the held-back link, now that the page it points to is complete."""
        at, data = self._link_at, self._link
        self._link_at = self._link = None
        if at is not None and data is not None:
            os.pwrite(self.fileno(), data, at)

    def drop_link(self) -> None:
        """Forget the held-back link: the chain keeps ending at the last complete page."""
        self._link_at = self._link = None

    def write(self, data: Any, /) -> int:
        if self._link_at is not None and self._link is None and self.tell() == self._link_at:
            self._link = bytes(data)  # written by link(), once the page is complete
            self.seek(len(self._link), os.SEEK_CUR)
            return len(self._link)
        if self._pixels is not None and len(data) == 1:
            end = self.tell() + 1
            if end >= len(self._pixels) and (end - len(self._pixels)) % DIRECT_ALIGN == 0:
                # tifffile ends an empty page's data with one zero byte: the frame instead
                self._write_pixels(end)
                self.seek(1, os.SEEK_CUR)
                return 1
        view = memoryview(data).cast("B")
        total = 0
        while total < len(view):
            written = super().write(view[total:])
            if not written:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.name))
            total += written
        return total


class _FileWriter:
    """One OME-TIFF file and the thread that writes it, page by page, in order."""

    def __init__(
        self,
        path: Path,
        frame_shape: tuple[int, int],
        dtype: np.dtype[Any],
        compression: str | None,
        resolution: dict[str, Any] | None = None,
        reordered: bool = False,
    ) -> None:
        self.path = path
        self.resolution = resolution or {}
        self.frame_shape = frame_shape
        self.dtype = dtype
        self.compression = _CODECS.get(compression or "none")
        self.pages_written = 0
        self._early: dict[int, tuple[np.ndarray | None, Future[None]]] = {}
        self._reordered = reordered
        #: pages written as zeros ahead of their frame: page number -> pixel data offset
        self._holes: dict[int, int] = {}
        self.broken: Exception | None = None
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._writer: tifffile.TiffWriter | None = None
        self._file: _FullWrites | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"ome-stream tiff {path.name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------ called from the loop
    def submit(self, job: Callable[[], Any]) -> Future[Any]:
        """Run ``job`` in this file's thread, after every job submitted before it."""
        future: Future[Any] = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except BaseException as err:
                    future.set_exception(err)

        self._jobs.put(run)
        return future

    def page(self, number: int, frame: np.ndarray | None) -> Future[None]:
        """Write page ``number`` (None: zeros); resolves once it is on disk.

        After a failed write the file is broken: every page still waiting, and every
        later one, fails with the same error instead of waiting forever.
        """
        done: Future[None] = Future()

        def place() -> None:
            if self.broken is not None:
                done.set_exception(self.broken)
                return
            if self._reordered:
                try:
                    self._place_anywhere(number, frame)
                except Exception as err:
                    self.broken = err
                    done.set_exception(err)
                else:
                    done.set_result(None)
                return
            self._early[number] = (frame, done)
            try:
                while self.pages_written in self._early:
                    pixels, waiter = self._early[self.pages_written]
                    self._write_page(pixels)
                    del self._early[self.pages_written - 1]
                    waiter.set_result(None)
            except Exception as err:
                self.broken = err
                for _, waiter in self._early.values():
                    waiter.set_exception(err)
                self._early.clear()

        self._jobs.put(place)
        return done

    def _place_anywhere(self, number: int, frame: np.ndarray | None) -> None:
        """Write page ``number`` now: append it after zero pages, or fill its zero page."""
        if number < self.pages_written:
            offset = self._holes.pop(number)
            if frame is not None and self._writer is not None:
                handle = self._writer.filehandle
                pixels = np.ascontiguousarray(frame, dtype=self.dtype.newbyteorder("="))
                handle.seek(offset)
                handle.write(pixels.tobytes())
                handle.seek(0, os.SEEK_END)
                handle.flush()
            return
        while self.pages_written < number:
            hole = self.pages_written
            self._holes[hole] = self._write_hole()
        self._write_page(frame)

    @contextlib.contextmanager
    def _chain_kept(self) -> Iterator[None]:
        """If a page write fails, end the IFD chain at the last complete page again.

        tifffile links the previous IFD to the new one before it writes the new IFD; after a
        failure (a full disk) that link would point at nothing and make the whole file
        unreadable past it, so it is reset to 0 (overwriting bytes already on disk needs no
        new space).
        """
        assert self._writer is not None
        writer = self._writer
        pointer = writer._ifdoffset
        file = self._file
        assert file is not None
        file.hold_link(pointer)  # linked only once the page is complete (see there)
        try:
            yield
        except BaseException:
            file.drop_link()
            end_of_chain = struct.pack(writer.tiff.offsetformat, 0)
            with contextlib.suppress(OSError):
                os.pwrite(file.fileno(), end_of_chain, pointer)
            raise
        file.link()

    def _write_hole(self) -> int:
        """Append an uncompressed zero page (sparse); return the offset of its pixels."""
        if self._writer is None:
            raise OSError(f"{self.path} is not open for writing")
        first = self.pages_written == 0
        with self._chain_kept():
            self._writer.write(
                None,
                shape=self.frame_shape,
                dtype=self.dtype,
                description=PLACEHOLDER if first else None,
                metadata=None,
                contiguous=False,
                photometric="minisblack",
            )
            handle = self._writer.filehandle
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            handle.flush()
        self.pages_written += 1
        # the pixels are the last bytes tifffile wrote (its IFD precedes them)
        return end - int(np.prod(self.frame_shape)) * self.dtype.itemsize

    def count_pages(self) -> int:
        """Pages written so far (as a job: after every job queued before it)."""
        return self.pages_written

    def held_pages(self) -> list[int]:
        """Pages received ahead of their turn (read between jobs, from any thread)."""
        return list(self._early)

    def stop(self) -> None:
        """Finish queued jobs and end the thread (called from a worker thread)."""
        self._jobs.put(None)
        self._thread.join()

    # ------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()
        self.close_writer()

    def close_writer(self) -> None:
        """Close the TIFF file (in the writer thread).

        After a failed write only the file is closed: the failure was reported, and the
        file ends at the last complete page.
        """
        writer, self._writer = self._writer, None
        file, self._file = self._file, None
        try:
            if writer is not None and self.broken is None:
                writer.close()
        finally:
            if file is not None:
                file.close()

    def discard(self) -> None:
        """Close and remove the file (in the writer thread): it holds no image."""
        self.close_writer()
        self.path.unlink(missing_ok=True)

    def create(self) -> None:
        """Create the file (in the writer thread), so an unwritable target fails at open."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # unbuffered: every write reaches the operating system at once, so after a failed
        # write nothing stale is left in a buffer to be written over the repaired IFD chain
        self._file = _FullWrites(self.path, "w+")
        try:
            self._file.open_direct()
            self._writer = tifffile.TiffWriter(self._file, bigtiff=True)
        except BaseException:
            self._file.close()
            self._file = None
            raise

    def _write_page(self, frame: np.ndarray | None) -> None:
        if frame is None:
            frame = np.zeros(self.frame_shape, self.dtype)
        if self._writer is None:
            raise OSError(f"{self.path} is not open for writing")
        first = self.pages_written == 0
        kwargs: dict[str, Any] = {}
        if self.compression is not None:
            kwargs["compression"] = self.compression
            # zlib gains from the horizontal predictor; zstd does not on camera frames (its
            # files came out 2 % larger with it, for 9 % more CPU), lzw is not offered it
            kwargs["predictor"] = self.compression == "zlib"
            if min(self.frame_shape) >= 256:
                kwargs["tile"] = (256, 256)
                kwargs["maxworkers"] = 2
        file = self._file
        assert file is not None
        with self._chain_kept():
            # a large uncompressed frame goes past the page cache: tifffile writes an empty
            # page (its tags, block-aligned data), the file writes the frame as its data
            direct = self.compression is None and file.place_pixels(frame)
            if direct:
                kwargs.update(shape=frame.shape, dtype=frame.dtype.newbyteorder("="))
                kwargs["align"] = DIRECT_ALIGN
            try:
                self._writer.write(
                    None if direct else frame,
                    description=PLACEHOLDER if first else None,
                    metadata=None,
                    contiguous=False,
                    photometric="minisblack",
                    **self.resolution,
                    **kwargs,
                )
            finally:
                placed = file.pixels_placed()
            if direct and not placed:
                # this tifffile wrote the empty page otherwise than with the one closing
                # byte the frame takes the place of: write the frame where its data is
                offset = getattr(self._writer, "_dataoffset", None)
                if not isinstance(offset, int):
                    raise RuntimeError(f"{self.path}: page {self.pages_written} got no pixels")
                file.write_at(offset, frame)
            self._writer.filehandle.flush()
        if not direct:  # direct pixels are on their way to the disk already
            file.write_out()
        self.pages_written += 1

    def read_page(self, number: int) -> np.ndarray:
        """Read back page ``number`` (in the writer thread, between writes)."""
        if self._writer is not None:
            self._writer.filehandle.flush()
        with tifffile.TiffFile(self.path) as tif:
            page: np.ndarray = tif.pages[number].asarray()
        return page


def _place_xml(path: Path, xml: str) -> None:
    tifffile.tiffcomment(path, comment=xml.encode("utf-8"))


def _write_companion(path: Path, xml: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(xml.encode("utf-8"))


# centimetres per unit: TIFF resolution tags count pixels per centimetre
_CM_PER_UNIT = {
    "nanometer": 1e-7, "nm": 1e-7, "micrometer": 1e-4, "um": 1e-4, "µm": 1e-4,
    "millimeter": 0.1, "mm": 0.1, "centimeter": 1.0, "meter": 100.0,
}  # fmt: skip


def resolution_tags(layout: Layout) -> dict[str, Any]:
    """TIFF XResolution/YResolution (pixels per cm) from the x/y pixel size, if known.

    For readers that ignore the OME-XML (ImageJ's plain TIFF reader, image viewers).
    """
    y_dim, x_dim = layout.settings.frame_dimensions
    sizes = []
    for dim in (x_dim, y_dim):
        per_unit = _CM_PER_UNIT.get(dim.unit or "micrometer")
        if not dim.scale or per_unit is None:
            return {}
        sizes.append(1.0 / (float(dim.scale) * per_unit))
    return {"resolution": tuple(sizes), "resolutionunit": tifffile.RESUNIT.CENTIMETER}


class TiffBackend(Backend):
    """Writes one OME-TIFF file per position; see the module docstring."""

    max_inflight = 4
    frame_blocks = True

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        settings = layout.settings
        self._files_plan = tiff_files(layout)
        self._paths = [Path(p) for p in self._files_plan.paths]
        self._resolution = resolution_tags(layout)
        self._files: list[_FileWriter] = []
        permutation = settings.storage_permutation
        self._reordered = permutation != tuple(sorted(permutation))

    async def open(self) -> None:
        """Start one writer thread per file and create the files.

        An unwritable target fails here, before any frame is accepted.
        """
        settings = self.layout.settings
        for array, path in zip(self.layout.arrays, self._paths, strict=True):
            self._files.append(
                _FileWriter(
                    path,
                    self.layout.frame_shape,
                    array.dtype,
                    settings.compression,
                    self._resolution,
                    self._reordered,
                )
            )
            await wait_future(self._files[-1].submit(self._files[-1].create))

    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Write one frame as the page of its storage index; return once it is in the file.

        With a storage order that permutes the acquisition order, see the module docstring.
        """
        file = self._files[array_index]
        frame = block.reshape(block.shape[-2:])
        number = self.layout.arrays[array_index].frame_number(origin)
        await wait_future(file.page(number, frame))

    async def skip(self, array_index: int, index: tuple[int, ...]) -> None:
        """A skipped frame still needs its page: write zeros there."""
        file = self._files[array_index]
        await wait_future(file.page(self.layout.arrays[array_index].frame_number(index), None))

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Pages are appended: nothing to resize; the OME-XML gets the final sizes."""

    async def read_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray:
        """Read one page back from the file being written."""
        file = self._files[array_index]
        number = self.layout.arrays[array_index].frame_number(index)
        frame: np.ndarray = await wait_future(file.submit(lambda: file.read_page(number)))
        return frame

    async def finalize(self, record: AcquisitionRecord) -> None:
        """Pad missing pages with zeros, then write each file's OME-XML.

        An unbounded acquisition that ended before its first frame leaves no file: a TIFF
        cannot hold zero images (OME-XML needs ``SizeT >= 1``).
        """
        discarded: set[int] = set()
        for array_index, file in enumerate(self._files):
            shape = record.final_shapes[array_index]
            total = int(np.prod(shape[:-2], dtype=np.int64))
            if total == 0:  # unbounded, ended before its first frame: a TIFF needs an image
                await wait_future(file.submit(file.discard))
                discarded.add(array_index)
                continue
            written: int = await wait_future(file.submit(file.count_pages))
            held = set(file.held_pages())
            pending = [file.page(n, None) for n in range(written, total) if n not in held]
            for future in pending:
                await wait_future(future)
            if file.broken is not None:
                raise file.broken
        if len(discarded) == len(self._files):
            return  # nothing was acquired: no file, and no document to place
        documents = await anyio.to_thread.run_sync(tiff_documents, self.layout, record)
        for array_index, file in enumerate(self._files):
            if array_index in discarded:
                continue
            document = documents[array_index]

            def place_xml(file: _FileWriter = file, document: Any = document) -> None:
                xml = document.to_xml()
                file.close_writer()
                tifffile.tiffcomment(file.path, comment=xml.encode("utf-8"))

            await wait_future(file.submit(place_xml))
        await self._write_companion(documents)

    async def _write_companion(self, documents: dict[int, Any]) -> None:
        companion = self._files_plan.companion
        if companion is not None:
            xml: str = await anyio.to_thread.run_sync(documents[COMPANION_INDEX].to_xml)
            await anyio.to_thread.run_sync(_write_companion, Path(companion), xml)

    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Replace each file's OME-XML, and the companion file (after close)."""
        documents = await anyio.to_thread.run_sync(tiff_documents, self.layout, record)
        for array_index, path in enumerate(self._paths):
            xml: str = await anyio.to_thread.run_sync(documents[array_index].to_xml)
            await anyio.to_thread.run_sync(_place_xml, path, xml)
        await self._write_companion(documents)

    async def aclose(self) -> None:
        """Stop the writer threads (their queued work finishes first)."""
        for file in self._files:
            await anyio.to_thread.run_sync(file.stop)


BACKEND = TiffBackend
