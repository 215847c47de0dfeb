"""The stream's lifecycle: its limits, and streams their user never closes.

Streams that are garbage-collected, left open when the script ends, or entered and never
exited are closed by ome-stream with a warning; the data are read back with zarr-python
and tifffile to show nothing was lost. Interpreter exit is tested in real subprocesses.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from conftest import make_frames, read_scratch
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from ome_stream.backends.base import available_backends
from ome_stream.errors import UnclosedStreamWarning

BACKENDS = available_backends()


def target(root: Path, backend: str, name: str = "run") -> Path:
    return root / (f"{name}.ome.tiff" if backend == "tifffile" else f"{name}.ome.zarr")


def read_back(path: Path) -> np.ndarray:
    if (path / "manifest.json").is_file():
        return read_scratch(path)
    if path.name.endswith(".ome.tiff"):
        with tifffile.TiffFile(path) as tif:
            assert tif.is_ome, "the final OME-XML is missing"
            return tif.asarray()
    return np.asarray(zarr.open_array(str(path / "0"), mode="r")[...])


# ---------------------------------------------------------------- limits and messages
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_single_plane_acquisition_on_every_backend(tmp_path: Path, backend: str) -> None:
    path = target(tmp_path, backend)
    settings = AcquisitionSettings(
        root_path=path,
        dtype="uint16",
        format=backend,
        dimensions=dims_from_standard_axes({"y": 24, "x": 16}),
    )
    frame = make_frames(1, (24, 16))[0]
    with create_stream(settings) as stream:
        stream.append(frame)
        with pytest.raises(IndexError, match="would exceed total of 1 frames"):
            stream.append(frame)
    np.testing.assert_array_equal(read_back(path), frame)


@pytest.mark.anyio
async def test_past_the_end_and_skip_messages(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "e.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=3, unit="s"),
            *dims_from_standard_axes({"y": 4, "x": 4}),
        ],
    )
    frames = make_frames(3, (4, 4), dtype="uint8")
    async with open_stream(settings) as stream:
        await stream.append(frames[0])
        with pytest.raises(ValueError, match="frames must be positive, got 0"):
            await stream.skip(frames=0)
        with pytest.raises(
            IndexError,
            match=r"Cannot skip frames: would exceed total of 3 frames \(tried to skip 3\)\. "
            "Check your AcquisitionSettings.dimensions",
        ):
            await stream.skip(frames=3)
        assert stream.stats.frames_accepted == 1  # a refused skip skips nothing
        await stream.skip()
        await stream.append(frames[2])
        with pytest.raises(IndexError, match="set the count of your first dimension to None"):
            await stream.append(frames[0])
        with pytest.raises(IndexError, match="Cannot append frame: would exceed total of 3"):
            stream.append_nowait(frames[0])
    data = read_back(tmp_path / "e.ome.zarr")
    np.testing.assert_array_equal(data[[0, 2]], frames[[0, 2]])
    assert not data[1].any()


@pytest.mark.anyio
async def test_incomplete_settings_are_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    dims = dims_from_standard_axes({"t": 2, "y": 4, "x": 4})
    no_root = AcquisitionSettings(format="ome-zarr", dimensions=dims, dtype="uint16")
    with pytest.raises(ValueError, match="root_path is required for ome-zarr format"):
        create_stream(no_root)
    with pytest.raises(ValueError, match="root_path is required for ome-tiff format"):
        open_stream(AcquisitionSettings(format="ome-tiff", dimensions=dims, dtype="uint16"))
    no_dtype = AcquisitionSettings(root_path=tmp_path / "d.ome.zarr", dimensions=dims)
    with pytest.raises(ValueError, match="dtype must be set"):
        create_stream(no_dtype)
    assert list(tmp_path.iterdir()) == []
    # completed field by field, the same settings object opens
    no_dtype.dtype = "uint16"
    frames = make_frames(2, (4, 4))
    async with open_stream(no_dtype) as stream:
        for frame in frames:
            await stream.append(frame)
    np.testing.assert_array_equal(read_back(tmp_path / "d.ome.zarr"), frames)


# ---------------------------------------------------------------- garbage collection
def test_a_collected_stream_is_closed_with_a_warning(tmp_path: Path) -> None:
    dims = [Dimension(name="t", count=2), *dims_from_standard_axes({"y": 8, "x": 8})]
    frames = make_frames(2, (8, 8))

    def settings(name: str) -> AcquisitionSettings:
        return AcquisitionSettings(root_path=tmp_path / name, dtype="uint16", dimensions=dims)

    stream = create_stream(settings("gc.ome.zarr"))
    stream.append(frames[0])
    with pytest.warns(UnclosedStreamWarning, match="OMEStream was not closed before garbage"):
        del stream  # the last reference: collected at once
    data = read_back(tmp_path / "gc.ome.zarr")  # closed: the frame and the metadata are there
    np.testing.assert_array_equal(data[0], frames[0])
    assert (tmp_path / "gc.ome.zarr" / "zarr.json").read_text().count("multiscales")

    empty = create_stream(settings("empty.ome.zarr"))  # nothing appended: closed silently
    del empty
    gc.collect()
    closed = create_stream(settings("closed.ome.zarr"))
    closed.append(frames[1])
    closed.close()
    del closed
    gc.collect()
    np.testing.assert_array_equal(read_back(tmp_path / "closed.ome.zarr")[0], frames[1])


# ---------------------------------------------------------------- interpreter exit
SYNC_SCRIPT = """
import sys
import numpy as np
from ome_stream import AcquisitionSettings, Dimension, create_stream, dims_from_standard_axes

path, backend = sys.argv[1], sys.argv[2]
settings = AcquisitionSettings(
    root_path=path, dtype="uint16", format=backend,
    dimensions=[Dimension(name="t", count=None, chunk_size=4),
                *dims_from_standard_axes({"y": 32, "x": 32})],
)
stream = create_stream(settings, drain_timeout=20)
for i in range(10):
    stream.append(np.full((32, 32), i + 1, np.uint16))
print("script done", flush=True)
"""


def run_script(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONWARNINGS="default")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test instead of stalling it
        env=env,
        check=False,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unclosed_sync_stream_is_closed_at_exit(tmp_path: Path, backend: str) -> None:
    path = target(tmp_path, backend)
    result = run_script(SYNC_SCRIPT, str(path), backend)
    assert result.returncode == 0, result.stderr
    assert "script done" in result.stdout
    assert "UnclosedStreamWarning" in result.stderr
    assert "was not closed before the interpreter exited" in result.stderr
    data = read_back(path)
    assert data.shape == (10, 32, 32)  # trimmed to what was appended: metadata finalized
    np.testing.assert_array_equal(data[:, 0, 0], np.arange(1, 11))


STALLED_BACKEND = """
import anyio
from ome_stream.backends.tensorstore import TensorStoreBackend

class Stalled(TensorStoreBackend):
    async def write(self, array_index, origin, block):
        await anyio.sleep(3600)  # storage that never answers

BACKEND = Stalled
"""

STALLED_SCRIPT = """
import sys
import numpy as np
from ome_stream import AcquisitionSettings, create_stream, dims_from_standard_axes
from ome_stream.backends import base

sys.path.insert(0, sys.argv[2])
base.BACKENDS["stalled"] = base.BackendInfo(
    name="stalled", format="ome-zarr", module="stalled_backend", requires=("tensorstore",),
    extra=None, compressions=("none",))
settings = AcquisitionSettings(
    root_path=sys.argv[1], dtype="uint16", format="stalled",
    dimensions=dims_from_standard_axes({"t": 5, "y": 6, "x": 10}))
stream = create_stream(settings, drain_timeout=1)
for i in range(5):
    stream.append(np.full((6, 10), i, np.uint16))
"""


def test_a_stream_that_cannot_drain_at_exit_says_what_was_lost(tmp_path: Path) -> None:
    (tmp_path / "stalled_backend.py").write_text(STALLED_BACKEND)
    result = run_script(
        STALLED_SCRIPT, str(tmp_path / "stalled.ome.zarr"), str(tmp_path), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "did not drain within 1 s" in result.stderr
    assert "5 of 5 accepted frames were not written" in result.stderr
    assert "giving up" not in result.stderr  # the library's log stays silent by default


ASYNC_SCRIPT = """
import sys
import anyio
import numpy as np
from ome_stream import AcquisitionSettings, Dimension, dims_from_standard_axes, open_stream

async def main():
    settings = AcquisitionSettings(
        root_path=sys.argv[1], dtype="uint16",
        dimensions=[Dimension(name="t", count=12, chunk_size=4),
                    *dims_from_standard_axes({"y": 16, "x": 16})])
    stream = open_stream(settings)
    await stream.__aenter__()  # entered, never exited
    for i in range(10):
        await stream.append(np.full((16, 16), i + 1, np.uint16))
    print("main done", flush=True)

anyio.run(main, backend=sys.argv[2])
"""


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_an_async_stream_never_exited_is_closed_when_its_loop_ends(
    tmp_path: Path, loop: str
) -> None:
    path = tmp_path / "a.ome.zarr"
    result = run_script(ASYNC_SCRIPT, str(path), loop)
    assert result.returncode == 0, result.stderr
    assert "main done" in result.stdout
    assert "TrioInternalError" not in result.stderr
    assert "its event loop ended while it was open" in result.stderr
    data = read_back(path)
    if loop == "trio":  # trio lets the service finish the stream: nothing lost
        np.testing.assert_array_equal(data[:, 0, 0], [*range(1, 11), 0, 0])
        assert "may be lost" not in result.stderr
    else:  # asyncio cancels every task when its loop ends: the loss is told, not silent
        written = int(np.count_nonzero(data[:, 0, 0]))
        np.testing.assert_array_equal(data[:written, 0, 0], range(1, written + 1))
        if written < 10:
            assert "accepted frames may be lost" in result.stderr
