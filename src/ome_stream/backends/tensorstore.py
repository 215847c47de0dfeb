"""OME-Zarr v0.5 through tensorstore's zarr3 driver (the default OME-Zarr backend).

tensorstore encodes and writes in its own C++ threads and releases the GIL; its futures
are awaited through anyio, so the event loop never waits on storage.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import tensorstore as ts

from ome_stream.backends._futures import wait_future
from ome_stream.backends.base import Backend
from ome_stream.metadata.ngff import group_documents

if TYPE_CHECKING:
    import numpy as np

    from ome_stream.layout import AcquisitionRecord, ArraySpec, Layout

__all__ = ["TensorStoreBackend", "kvstore_spec", "zarr_codecs"]


#: Bounded retries for object storage: transient errors are retried with backoff, a
#: dead endpoint fails within seconds instead of stalling the acquisition.
S3_MAX_RETRIES = 5
S3_RETRIES = {"max_retries": S3_MAX_RETRIES, "initial_delay": "0.1s", "max_delay": "2s"}


def kvstore_spec(root: str, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    """The tensorstore kvstore spec of a dataset root: a local path or ``s3://bucket/key``.

    For S3 the endpoint and region come from ``storage_options`` (``endpoint``,
    ``region``) or the standard environment variables (``AWS_ENDPOINT_URL_S3``,
    ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``); credentials come from
    the standard AWS environment variables or profile files.
    """
    if not root.startswith("s3://"):
        return {"driver": "file", "path": os.path.abspath(root) + "/"}
    options = storage_options or {}
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    spec: dict[str, Any] = {
        "driver": "s3",
        "bucket": bucket,
        "path": prefix.strip("/") + "/" if prefix.strip("/") else "",
        "aws_region": options.get("region")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1",
        "context": {"s3_request_retries": S3_RETRIES},
    }
    endpoint = (
        options.get("endpoint")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        spec["endpoint"] = endpoint
    return spec


def prepare_object_target(
    root: str, overwrite: bool, storage_options: dict[str, str] | None
) -> None:
    """The overwrite rules on object storage (blocking; run it in a worker thread).

    Objects under the prefix mean the target exists: ``FileExistsError`` without
    ``overwrite``; with it, only a zarr dataset (a ``zarr.json`` at the prefix) is deleted.
    """
    store = ts.KvStore.open(kvstore_spec(root, storage_options)).result()
    keys = store.list().result()
    if not keys:
        return
    if not overwrite:
        raise FileExistsError(
            f"{root!r} already holds {len(keys)} objects; pass overwrite=True to replace it"
        )
    if b"zarr.json" not in keys:
        raise FileExistsError(
            f"{root!r} holds objects but no zarr dataset; refusing to delete "
            "them even with overwrite=True"
        )
    store.delete_range(ts.KvStore.KeyRange()).result()


def zarr_codecs(compression: str | None, itemsize: int) -> list[dict[str, Any]]:
    """The zarr v3 codec chain (bytes → compressor) for an ome-stream compression name."""
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compression in ("blosc-zstd", "blosc-lz4"):
        codecs.append(
            {
                "name": "blosc",
                "configuration": {
                    "cname": compression.removeprefix("blosc-"),
                    # zstd level 3: streaming speed on a 2-core machine (level 5 cost 25 %
                    # of throughput in benchmark C for a few % of size); lz4 is cheap at 5
                    "clevel": 3 if compression == "blosc-zstd" else 5,
                    "shuffle": "bitshuffle" if itemsize == 1 else "shuffle",
                    "typesize": itemsize,
                    "blocksize": 0,
                },
            }
        )
    elif compression == "zstd":
        codecs.append({"name": "zstd", "configuration": {"level": 3, "checksum": False}})
    return codecs


def _array_metadata(array: ArraySpec, compression: str | None) -> dict[str, Any]:
    codecs = zarr_codecs(compression, array.dtype.itemsize)
    if array.sharded:
        codecs = [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": list(array.chunk_shape),
                    "codecs": codecs,
                    "index_codecs": [
                        {"name": "bytes", "configuration": {"endian": "little"}},
                        {"name": "crc32c"},
                    ],
                    "index_location": "end",
                },
            }
        ]
    return {
        "shape": list(array.shape),
        "data_type": array.dtype.name,
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": list(array.shard_shape)},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "codecs": codecs,
        "fill_value": 0,
        "dimension_names": list(array.dim_names),
    }


class TensorStoreBackend(Backend):
    """Writes every array with tensorstore; places NGFF group documents in its kvstore."""

    max_inflight = 32

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        settings = layout.settings
        self._kvstore = kvstore_spec(settings.output_path, settings.storage_options)
        self._context = ts.Context({"cache_pool": {"total_bytes_limit": 0}})
        self._arrays: list[ts.TensorStore] = []
        self._kv: ts.KvStore | None = None

    async def open(self) -> None:
        """Create the arrays and write the group documents of the empty dataset."""
        self._kv = await wait_future(ts.KvStore.open(self._kvstore, context=self._context))
        compression = self.layout.settings.compression
        for array in self.layout.arrays:
            spec = {
                "driver": "zarr3",
                "kvstore": {
                    **self._kvstore,
                    "path": self._kvstore["path"] + array.array_path + "/",
                },
                "metadata": _array_metadata(array, compression),
            }
            store = await wait_future(
                ts.open(spec, create=True, delete_existing=True, context=self._context)
            )
            self._arrays.append(store)
        await self._write_groups(group_documents(self.layout))

    async def _write_groups(self, docs: dict[str, dict[str, Any]]) -> None:
        assert self._kv is not None
        for path, doc in docs.items():
            key = f"{path}/zarr.json" if path else "zarr.json"
            await wait_future(self._kv.write(key, json.dumps(doc, indent=2).encode()))

    async def write(self, array_index: int, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Write one whole block and wait until it is committed to storage."""
        self.layout.contrast.observe(array_index, origin, block)
        region = tuple(slice(o, o + n) for o, n in zip(origin, block.shape, strict=False))
        # The stream keeps ``block`` unmodified until this returns and the context has no
        # cache, so tensorstore may use the data in place: no copy on the event loop.
        future = self._arrays[array_index][region].write(
            block, can_reference_source_data_indefinitely=True
        )
        await wait_future(future.commit)

    async def read_frame(self, array_index: int, index: tuple[int, ...]) -> np.ndarray:
        """Read one frame back from storage."""
        frame: np.ndarray = await wait_future(self._arrays[array_index][index].read())
        return frame

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Grow or trim the unbounded first axis."""
        store = self._arrays[array_index]
        current = store.domain.exclusive_max[0]
        if first_extent == current:
            return
        upper = [first_extent, *([None] * (store.rank - 1))]
        self._arrays[array_index] = await wait_future(
            store.resize(
                exclusive_max=upper,
                resize_metadata_only=first_extent > current,
                expand_only=first_extent > current,
                shrink_only=first_extent < current,
            )
        )

    async def finalize(self, record: AcquisitionRecord) -> None:
        """Trim unbounded arrays to what was acquired and write the final metadata."""
        if self.layout.settings.is_unbounded:
            for index, shape in enumerate(record.final_shapes):
                await self.resize(index, shape[0])
        await anyio.to_thread.run_sync(self.layout.contrast.windows)
        await self.rewrite_metadata(record)

    async def rewrite_metadata(self, record: AcquisitionRecord) -> None:
        """Write every group document from ``record``."""
        await self._write_groups(group_documents(self.layout, record))


BACKEND = TensorStoreBackend
