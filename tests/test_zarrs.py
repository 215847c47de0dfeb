"""The zarrs-python backend: zarr-python's layout with chunks encoded and stored by zarrs.

Everything written is read back with zarr-python's default (Python) codec pipeline and
with tensorstore, and compared with the frames and with what the zarr-python backend
writes for the same acquisition. The zarrs pipeline must serve this backend's arrays only:
the process-wide zarr configuration never changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import tensorstore as ts
import zarr
from zarr.core.codec_pipeline import BatchedCodecPipeline

from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Pyramid,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from test_s3 import BUCKET
from test_s3 import read_both as read_s3
from test_s3 import s3 as s3  # the S3 server fixture

zarrs = pytest.importorskip("zarrs")

DEFAULT_PIPELINE = "zarr.core.codec_pipeline.BatchedCodecPipeline"


def read_both(path: Path) -> np.ndarray:
    """The array at ``path`` through zarr-python's own pipeline and through tensorstore."""
    array = zarr.open_array(str(path), mode="r")
    assert isinstance(array._async_array.codec_pipeline, BatchedCodecPipeline)
    by_zarr = np.asarray(array[...])
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    by_ts = ts.open(spec, read=True).result().read().result()
    np.testing.assert_array_equal(by_zarr, by_ts)
    return by_zarr


def documents(root: Path) -> dict[str, Any]:
    """Every zarr.json below ``root``, by relative path."""
    return {
        str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("zarr.json"))
    }


def chunk_keys(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "c" in p.parts)


async def acquire(settings: AcquisitionSettings, frames: np.ndarray) -> None:
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)


def settings_for(root: Path, backend: str, **kwargs: Any) -> AcquisitionSettings:
    kwargs.setdefault(
        "dimensions",
        dims_from_standard_axes(
            {"t": 3, "p": ["A", "B"], "c": 2, "z": 4, "y": 32, "x": 48},
            chunk_shapes={"z": 2, "y": 16, "x": 16},
            shard_shapes={"t": 1, "z": 2, "y": 2, "x": 3},
        ),
    )
    return AcquisitionSettings(root_path=root, format=backend, dtype="uint16", **kwargs)


@pytest.mark.anyio
@pytest.mark.parametrize("compression", ["none", "blosc-zstd", "blosc-lz4", "zstd"])
async def test_multi_position_sharded_round_trip_equals_zarr_python(
    tmp_path: Path, compression: str
) -> None:
    frames = make_frames(48, (32, 48))
    ours = tmp_path / "zarrs.ome.zarr"
    reference = tmp_path / "zarr.ome.zarr"
    await acquire(settings_for(ours, "zarrs-python", compression=compression), frames)
    await acquire(settings_for(reference, "zarr-python", compression=compression), frames)
    acquired = frames.reshape(3, 2, 2, 4, 32, 48)  # t, p, c, z, y, x
    for p, name in enumerate(["A", "B"]):
        np.testing.assert_array_equal(read_both(ours / name / "0"), acquired[:, p])
        np.testing.assert_array_equal(read_both(reference / name / "0"), acquired[:, p])
    assert documents(ours) == documents(reference)
    assert chunk_keys(ours) == chunk_keys(reference)
    meta = documents(ours)["A/0/zarr.json"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 4, 32, 48]
    assert meta["codecs"][0]["name"] == "sharding_indexed"


def test_unbounded_sync_grows_and_is_trimmed(tmp_path: Path) -> None:
    root = tmp_path / "grow.ome.zarr"
    settings = AcquisitionSettings(
        root_path=root,
        format="zarrs-python",
        dtype="uint16",
        compression="blosc-zstd",
        dimensions=dims_from_standard_axes(
            {"t": None, "c": 2, "y": 16, "x": 16}, shard_shapes={"t": 4}
        ),
    )
    frames = make_frames(2 * 75, (16, 16), seed=2)  # 75 rows: several resizes, a partial shard
    with create_stream(settings) as stream:
        for frame in frames:
            stream.append(frame)
    data = read_both(root / "0")
    assert data.shape == (75, 2, 16, 16)
    np.testing.assert_array_equal(data, frames.reshape(75, 2, 16, 16))


@pytest.mark.anyio
async def test_zarrs_pipeline_is_scoped_to_the_backends_arrays(tmp_path: Path) -> None:
    """zarrs writes and reads this backend's arrays; nobody else's pipeline changes."""
    frames = make_frames(8, (16, 16), seed=3)
    other = zarr.create_array(
        str(tmp_path / "other.zarr"), shape=(4,), chunks=(2,), dtype="uint8", fill_value=0
    )
    settings = AcquisitionSettings(
        root_path=tmp_path / "scoped.ome.zarr",
        format="zarrs-python",
        dtype="uint16",
        dimensions=dims_from_standard_axes({"t": 8, "y": 16, "x": 16}),
    )
    async with open_stream(settings) as stream:
        backend = stream._backend
        pipelines = [array.codec_pipeline for array in backend._arrays]  # type: ignore[union-attr]
        assert all(type(p) is zarrs.ZarrsCodecPipeline for p in pipelines)
        assert all(p.impl is not None for p in pipelines)  # no silent Python fallback
        for frame in frames[:5]:
            await stream.append(frame)
        await stream.flush()
        # meanwhile, the rest of the process still uses zarr-python's own pipeline
        assert zarr.config.get("codec_pipeline.path") == DEFAULT_PIPELINE
        assert isinstance(
            zarr.open_array(str(tmp_path / "other.zarr"))._async_array.codec_pipeline,
            BatchedCodecPipeline,
        )
        # the live view reads written frames back through zarrs
        live = await stream.view().read(slice(0, 5))
        for frame in frames[5:]:
            await stream.append(frame)
    np.testing.assert_array_equal(live, frames[:5])
    assert zarr.config.get("codec_pipeline.path") == DEFAULT_PIPELINE
    assert isinstance(other._async_array.codec_pipeline, BatchedCodecPipeline)
    np.testing.assert_array_equal(read_both(tmp_path / "scoped.ome.zarr" / "0"), frames)


@pytest.mark.anyio
async def test_pyramid_levels_equal_zarr_pythons(tmp_path: Path) -> None:
    dims = dims_from_standard_axes({"t": 2, "z": 4, "y": 32, "x": 32}, chunk_shapes={"z": 2})
    frames = make_frames(8, (32, 32), seed=4)
    for backend in ("zarrs-python", "zarr-python"):
        await acquire(
            AcquisitionSettings(
                root_path=tmp_path / f"{backend}.ome.zarr",
                format=backend,
                dtype="uint16",
                dimensions=dims,
                pyramid=Pyramid(levels=3, downsample_z=True),
            ),
            frames,
        )
    ours, reference = tmp_path / "zarrs-python.ome.zarr", tmp_path / "zarr-python.ome.zarr"
    np.testing.assert_array_equal(read_both(ours / "0"), frames.reshape(2, 4, 32, 32))
    for level in (1, 2):
        np.testing.assert_array_equal(
            read_both(ours / str(level)), read_both(reference / str(level))
        )
    assert documents(ours) == documents(reference)


@pytest.mark.anyio
async def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "twice.ome.zarr"
    settings = AcquisitionSettings(
        root_path=root,
        format="zarrs-python",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 2, "y": 4, "x": 4}),
    )
    first = make_frames(2, (4, 4), dtype="uint8", seed=5)
    await acquire(settings, first)
    with anyio.fail_after(30), pytest.raises(FileExistsError, match="overwrite=True"):
        await acquire(settings, first)
    np.testing.assert_array_equal(read_both(root / "0"), first)


@pytest.mark.anyio
@pytest.mark.filterwarnings(
    # zarrs rebuilds obstore's S3 store in its own Rust module: a RuntimeWarning that
    # connection pools are not shared, once per array; the data is unaffected
    "ignore:Successfully reconstructed a store defined in another Python module:RuntimeWarning"
)
async def test_to_s3_through_zarrs(s3: Any) -> None:
    """zarrs stores through zarr-python's ObjectStore (obstore) to a real S3 server."""
    settings = AcquisitionSettings(
        root_path=f"s3://{BUCKET}/lab/zarrs.ome.zarr",
        format="zarrs-python",
        dtype="uint16",
        compression="zstd",
        dimensions=dims_from_standard_axes(
            {"t": None, "c": 2, "y": 32, "x": 32},
            chunk_shapes={"y": 16, "x": 16},
        ),  # unsharded: s3rver answers tensorstore's suffix range requests wrongly
        storage_options={"endpoint": s3.endpoint, "region": "us-east-1"},
    )
    frames = make_frames(2 * 5, (32, 32), seed=6)
    async with open_stream(settings) as stream:
        assert all(
            type(a.codec_pipeline) is zarrs.ZarrsCodecPipeline and a.codec_pipeline.impl
            for a in stream._backend._arrays  # type: ignore[union-attr]
        )
        for frame in frames:
            await stream.append(frame)
    data = read_s3(s3, "lab/zarrs.ome.zarr", "0")
    np.testing.assert_array_equal(data, frames.reshape(5, 2, 32, 32))
