"""OME-Zarr v0.5 through zarr-python with the zarrs (Rust) codec pipeline (extra ``zarrs``).

Everything but chunk encoding and storage I/O is the zarr-python backend: the same arrays,
group documents and private event-loop thread. The zarrs pipeline is given to each array
this backend creates, not selected through ``zarr.config`` (``codec_pipeline.path``):
that setting is process-global, so switching it for the length of an acquisition would
move every other zarr user in the process (another stream, a viewer reading the data)
onto zarrs as well. The arrays are created with ``write_empty_chunks=True``, which zarrs
honours, and zarrs must accept their metadata: if it cannot, opening fails with a
``ValueError`` instead of falling back silently to zarr-python's Python codecs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zarrs import ZarrsCodecPipeline
from zarrs.pipeline import (
    UnsupportedMetadataError,
    get_codec_pipeline_fallback,
    get_codec_pipeline_impl,
)

from ome_stream.backends.zarr_python import ZarrPythonBackend

if TYPE_CHECKING:
    from zarr import AsyncArray

__all__ = ["ZarrsPythonBackend", "use_zarrs_pipeline"]


def use_zarrs_pipeline(array: AsyncArray[Any]) -> None:
    """Encode and store ``array``'s chunks with zarrs from now on (this array only).

    Raises
    ------
    ValueError
        zarrs cannot handle the array's metadata.

    """
    metadata, store = array.metadata, array.store_path.store
    try:
        impl = get_codec_pipeline_impl(metadata, store, strict=True)
    except UnsupportedMetadataError as err:
        raise ValueError(
            f"the zarrs codec pipeline cannot write array {array.store_path.path!r} "
            f"({err.__cause__}); use the 'zarr-python' or 'tensorstore' backend"
        ) from err
    pipeline = ZarrsCodecPipeline(
        metadata=metadata,
        store=store,
        impl=impl,
        # zarr-python's own codecs, for the selections zarrs does not index itself
        python_impl=get_codec_pipeline_fallback(metadata, strict=False),
    )
    # AsyncArray is a frozen dataclass; its pipeline is chosen once, at construction
    object.__setattr__(array, "codec_pipeline", pipeline)


async def _use_zarrs(arrays: list[AsyncArray[Any]]) -> None:
    for array in arrays:
        use_zarrs_pipeline(array)


class ZarrsPythonBackend(ZarrPythonBackend):
    """The zarr-python backend with every array encoded and stored by zarrs."""

    async def _open(self) -> None:
        await super()._open()
        await _use_zarrs(self._arrays)

    async def resize(self, array_index: int, first_extent: int) -> None:
        """Grow or trim the unbounded first axis; the pipeline follows the new shape."""
        await super().resize(array_index, first_extent)
        await self._run(_use_zarrs([self._arrays[array_index]]), "resize")


BACKEND = ZarrsPythonBackend
