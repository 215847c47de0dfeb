"""The metadata a stream collects: per-frame entries, global namespaces, user documents.

Kept apart from the lifecycle: the stream records what ``append``, ``set_global_metadata``
and ``update_metadata`` are given here, and builds the :class:`AcquisitionRecord` that the
backend's ``finalize`` places.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ome_types.model import OME

from ome_stream.layout import AcquisitionRecord
from ome_stream.metadata.ngff import RESERVED_ATTRIBUTES, group_attributes, group_documents
from ome_stream.metadata.ome_xml import build_ome

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ome_stream.backends.base import Backend
    from ome_stream.layout import Layout

__all__ = ["MetadataAPI", "StreamMetadata"]


class StreamMetadata:
    """Frame metadata, global metadata and metadata overrides of one stream."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.frame_metadata: list[list[dict[str, Any]]] = [[] for _ in layout.arrays]
        self.global_metadata: dict[str, Any] = {}
        self.overrides: dict[Any, Any] = {}

    def add_frame(
        self,
        array_index: int,
        frame_number: int,
        storage_index: tuple[int, ...],
        extra: dict[str, Any],
    ) -> None:
        """Record the metadata of one accepted frame, with where the frame is stored."""
        names = self.layout.arrays[array_index].dim_names
        self.frame_metadata[array_index].append(
            {
                "frame": frame_number,
                "index": dict(zip(names, storage_index, strict=False)),
                **extra,
            }
        )

    def set_global(self, namespace: str, metadata: Mapping[str, Any]) -> None:
        """Store ``metadata`` under ``namespace`` (see ``set_global_metadata``)."""
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"namespace must be a non-empty string, got {namespace!r}")
        if namespace in RESERVED_ATTRIBUTES:
            raise ValueError(f"namespace {namespace!r} is reserved")
        self.global_metadata[namespace] = json.loads(json.dumps(dict(metadata)))

    def record(self, final_shapes: list[tuple[int, ...]]) -> AcquisitionRecord:
        """What the backend places: the final shapes and every metadata document."""
        return AcquisitionRecord(
            final_shapes, self.frame_metadata, dict(self.global_metadata), dict(self.overrides)
        )

    def documents(self, record: AcquisitionRecord) -> dict[Any, Any]:
        """The metadata as it would be written from ``record`` (see ``get_metadata``)."""
        if self.layout.settings.file_format == "ome-tiff":
            return {
                index: record.overrides.get(index)
                or build_ome(
                    self.layout, array, record.final_shapes[index],
                    record.frame_metadata[index], record.global_metadata,
                )
                for index, array in enumerate(self.layout.images)
            }  # fmt: skip
        return group_attributes(group_documents(self.layout, record))

    def update(self, metadata: Mapping[Any, Any], known: Mapping[Any, Any]) -> None:
        """Replace documents of ``known`` (the current ones) by those of ``metadata``."""
        for key, value in metadata.items():
            if key not in known:
                raise KeyError(f"no metadata document {key!r}; known: {sorted(known, key=str)}")
            if self.layout.settings.file_format == "ome-tiff":
                if not isinstance(value, OME):
                    raise TypeError(f"OME-TIFF metadata must be ome_types.OME, got {value!r}")
                self.overrides[key] = value
            else:
                self.overrides["" if key == "." else key] = json.loads(json.dumps(value))


class MetadataAPI:
    """The metadata methods of :class:`~ome_stream.stream.AsyncOMEStream`."""

    metadata: StreamMetadata
    _backend: Backend | None
    _state: str

    def _record(self) -> AcquisitionRecord:
        raise NotImplementedError  # pragma: no cover - provided by the stream

    async def set_global_metadata(self, namespace: str, metadata: Mapping[str, Any]) -> None:
        """Attach acquisition-level metadata (a JSON mapping) under ``namespace``.

        OME-Zarr: a top-level key ``namespace`` in the root group's attributes. OME-TIFF: a
        MapAnnotation with that Namespace in every file, each top-level key a Map entry
        with a JSON-encoded value. Setting a namespace again replaces it. Before close the
        metadata is written when the stream closes; after close, at once. The namespaces
        ``ome``, ``ome_stream`` and ``ome_writers`` are reserved.
        """
        self.metadata.set_global(namespace, metadata)
        await self._rewrite_if_closed()

    def get_metadata(self) -> dict[Any, Any]:
        """The metadata as it would be written if the stream closed now.

        OME-Zarr: ``{group path: attributes}`` ('.' is the root group). OME-TIFF:
        ``{position index: ome_types.OME}``. Modify it and pass it to
        :meth:`update_metadata`.
        """
        return self.metadata.documents(self._record())

    async def update_metadata(self, metadata: Mapping[Any, Any]) -> None:
        """Replace metadata documents: the keys and values of :meth:`get_metadata`.

        Before close the documents replace the generated ones when the stream closes;
        after close they are written at once (for OME-TIFF, the OME-XML of each file).
        """
        self.metadata.update(metadata, self.get_metadata())
        await self._rewrite_if_closed()

    async def _rewrite_if_closed(self) -> None:
        if self._state == "closed" and self._backend is not None:
            await self._backend.rewrite_metadata(self._record())
