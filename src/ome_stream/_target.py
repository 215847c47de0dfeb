"""Preparing the output location: one writer per dataset, and the overwrite rules.

``overwrite=True`` replaces only a dataset this library writes, recognised by its content:

- OME-Zarr: a directory whose ``zarr.json`` parses as a zarr v3 group or array (or an empty
  directory);
- OME-TIFF, one position: a TIFF file whose first page holds OME-XML (or the placeholder
  description of an acquisition that never closed);
- OME-TIFF, several positions: only the files our naming produces
  (``<stem>_p<NNN>.ome.tiff``) in that directory, each an OME-TIFF as above. The directory
  itself, and anything else in it, is never touched (without ``overwrite`` the directory
  may exist; only the files to be written must not).

Nothing is replaced when the path is the current directory, one of its ancestors, the home
directory or ``/``. Replacement is atomic from the user's side: the old dataset is moved
aside (a hidden sibling), the new one is opened, and only then is the old one deleted; if
the open fails, what it created is removed and the old dataset is moved back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ome_stream._lock import WriterLock, acquire, sibling
from ome_stream.errors import WriterError

if TYPE_CHECKING:
    from ome_stream.backends.base import Backend
    from ome_stream.settings import AcquisitionSettings

__all__ = ["TargetLease", "is_object_url", "open_target", "prepare_target"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def is_object_url(path: str) -> bool:
    """Whether ``path`` names object storage (``s3://...``) rather than a local path."""
    return "://" in path


@dataclass
class TargetLease:
    """The output of one stream: locked for its lifetime, the old dataset kept aside.

    :func:`prepare_target` returns it; :meth:`commit` (the new dataset is open: delete the
    old one) or :meth:`rollback` (the open failed: put the old one back) follows, and
    :meth:`release` ends the lock when the stream closes.
    """

    lock: WriterLock | None = None
    #: (where the old entry is now, where it was)
    moved: list[tuple[Path, Path]] = field(default_factory=list)
    #: hidden places holding the old entries, deleted by :meth:`commit`
    aside: list[Path] = field(default_factory=list)
    #: paths the new dataset creates; removed by :meth:`rollback` (they are ours)
    created: list[Path] = field(default_factory=list)
    #: a directory the new dataset creates, removed by :meth:`rollback` when empty
    created_dir: Path | None = None

    def commit(self) -> None:
        """The new dataset is open: delete the old one (blocking).

        Never raises: what cannot be deleted stays in its hidden place, losing nothing.
        """
        for place in self.aside:
            with contextlib.suppress(OSError):
                _remove(place)
        self.aside.clear()
        self.moved.clear()

    def rollback(self) -> None:
        """The new dataset failed to open: remove what it created, restore the old one."""
        for path in self.created:
            _remove(path)
        if self.created_dir is not None:
            with contextlib.suppress(OSError):
                self.created_dir.rmdir()
        for now, was in reversed(self.moved):
            os.rename(now, was)
        for place in self.aside:
            with contextlib.suppress(OSError):
                place.rmdir()  # the aside directory of TIFF files, empty again
        self.moved.clear()
        self.aside.clear()

    def release(self) -> None:
        """End the lock (idempotent)."""
        if self.lock is not None:
            self.lock.release()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# ------------------------------------------------------------------ recognising datasets
def _is_zarr_node(path: Path) -> bool:
    """``path/zarr.json`` parses as a zarr v3 group or array."""
    try:
        doc = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(doc, dict)
        and doc.get("zarr_format") == 3
        and doc.get("node_type") in ("group", "array")
    )


def _is_ome_tiff(path: Path) -> bool:
    """A regular TIFF file whose first page has OME-XML or our in-progress placeholder."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                return False
        import tifffile

        from ome_stream.backends.tifffile import PLACEHOLDER

        with tifffile.TiffFile(path) as tif:
            first = tif.pages.first if len(tif.pages) else None
            description = first.description if isinstance(first, tifffile.TiffPage) else ""
    except Exception:  # unreadable: not something we may replace
        return False
    head = description.lstrip()[:512]
    return description == PLACEHOLDER or (head.startswith(("<?xml", "<OME")) and "<OME" in head)


def _protected(path: Path) -> str | None:
    """Why ``path`` may never be replaced, or None."""
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == Path(resolved.anchor):
        return "the filesystem root"
    if resolved == Path.home().resolve():
        return "the home directory"
    if resolved == cwd:
        return "the current directory"
    if resolved in cwd.parents:
        return "an ancestor of the current directory"
    return None


def _refuse(target: str, why: str) -> FileExistsError:
    return FileExistsError(
        f"{target!r} exists and {why}; refusing to delete it even with overwrite=True"
    )


# ------------------------------------------------------------------ preparing the target
def prepare_target(settings: AcquisitionSettings) -> TargetLease:
    """Lock the output path and make room for the new dataset (blocking).

    Raises
    ------
    DatasetLockedError
        (a FileExistsError) another stream is writing this dataset, with or without
        ``overwrite``.
    FileExistsError
        The output exists and ``overwrite`` is False, or it is not a dataset ome-stream may
        replace (see the module docstring): ``overwrite`` never deletes anything else.

    """
    if settings.file_format == "scratch":
        return TargetLease()  # the scratch backend applies its own rules (memory or files)
    target = settings.output_path
    if is_object_url(target):
        from ome_stream.backends.tensorstore import prepare_object_target

        prepare_object_target(target, settings.overwrite, settings.storage_options)
        return TargetLease()
    path = Path(target)
    absolute = Path(os.path.abspath(target))  # "." and ".." name their directory
    absolute.parent.mkdir(parents=True, exist_ok=True)
    # one lock file per real directory and name, however the path was spelled
    lease = TargetLease(lock=acquire(absolute.parent.resolve() / absolute.name))
    try:
        if settings.file_format == "ome-tiff" and settings.position_dimension is not None:
            _prepare_tiff_directory(settings, path, lease)
        else:
            _prepare_entry(settings, path, lease)
    except BaseException:
        lease.rollback()
        lease.release()
        raise
    return lease


def _prepare_entry(settings: AcquisitionSettings, path: Path, lease: TargetLease) -> None:
    """A zarr directory or a single TIFF file: replace it as a whole."""
    target = settings.output_path
    if not (path.exists() or path.is_symlink()):
        lease.created.append(path)
        return
    if not settings.overwrite:
        raise FileExistsError(f"{target!r} already exists; pass overwrite=True to replace it")
    if why := _protected(path):
        raise _refuse(target, f"is {why}")
    if path.is_symlink():
        raise _refuse(target, "is a symbolic link")
    if path.is_dir():
        empty = not any(path.iterdir())
        if not empty and (settings.file_format != "ome-zarr" or not _is_zarr_node(path)):
            raise _refuse(target, f"is not an {settings.file_format} dataset or an empty directory")
    elif settings.file_format != "ome-tiff" or not _is_ome_tiff(path):
        raise _refuse(target, f"is not an {settings.file_format} dataset")
    aside = sibling(path, f"ome-stream-old-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(path, aside)
    lease.moved.append((aside, path))
    lease.aside.append(aside)
    lease.created.append(path)  # only now: what is there from here on is ours


def _prepare_tiff_directory(settings: AcquisitionSettings, path: Path, lease: TargetLease) -> None:
    """Several positions: files of ours in a directory; only those files are replaced.

    The directory may exist and hold anything else: that is never touched.
    """
    target = settings.output_path
    planned = [Path(p) for p in settings.tiff_file_paths()]
    if not (path.exists() or path.is_symlink()):
        lease.created.extend(planned)
        lease.created_dir = path
        return
    if path.is_symlink() or not path.is_dir():
        raise FileExistsError(f"{target!r} exists and is not a directory")
    existing = [p for p in planned if p.exists() or p.is_symlink()]
    if existing and not settings.overwrite:
        raise FileExistsError(
            f"{str(existing[0])!r} already exists; pass overwrite=True to replace it"
        )
    replace = []
    if settings.overwrite:
        stem = planned[0].name.rsplit("_p", 1)[0]
        ours = re.compile(rf"{re.escape(stem)}_p\d{{3,}}\.ome\.tiff")
        for entry in sorted(path.iterdir()):
            if not ours.fullmatch(entry.name):
                continue  # not a name we write: never touched
            if _is_ome_tiff(entry):
                replace.append(entry)
            elif entry in planned or entry.is_symlink():
                raise _refuse(str(entry), "is not an OME-TIFF file this library wrote")
    if replace:
        if why := _protected(path):
            raise _refuse(target, f"is {why}")
        aside = path / f".ome-stream-old-{os.getpid()}-{secrets.token_hex(4)}"
        aside.mkdir()
        lease.aside.append(aside)
        for entry in replace:
            os.rename(entry, aside / entry.name)
            lease.moved.append((aside / entry.name, entry))
    # only now: none of the planned files exists, so what is there from here on is ours
    lease.created.extend(planned)


async def open_target(settings: AcquisitionSettings, backend: Backend) -> TargetLease:
    """Prepare the target and open ``backend`` on it; return the lease the stream holds.

    On any failure or cancellation the backend is closed (its threads and files released),
    what it created is removed, the dataset it would have replaced is restored and the lock
    is released. Errors other than ``FileExistsError`` become ``WriterError``.
    """
    lease: TargetLease | None = None
    try:
        with anyio.CancelScope(shield=True):  # a lease that exists is never lost
            lease = await anyio.to_thread.run_sync(prepare_target, settings)
        await backend.open()
    except BaseException as err:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await backend.aclose()
            if lease is not None:
                try:
                    await anyio.to_thread.run_sync(lease.rollback)
                finally:
                    lease.release()
        if isinstance(err, Exception) and not isinstance(err, FileExistsError | MemoryError):
            raise WriterError(f"cannot create {settings.output_path!r}: {err}") from err
        raise
    assert lease is not None
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(lease.commit)
    return lease
