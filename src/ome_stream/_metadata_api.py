"""The metadata a stream collects: per-frame entries, global namespaces, user documents.

Kept apart from the lifecycle: the stream records what ``append``, ``set_global_metadata``
and ``update_metadata`` are given here, and builds the :class:`AcquisitionRecord` that the
backend's ``finalize`` places.
"""

from __future__ import annotations

import json
import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from ome_stream.errors import WriterError
from ome_stream.layout import AcquisitionRecord
from ome_stream.metadata.api import accept_update, current_metadata
from ome_stream.metadata.ngff import RESERVED_ATTRIBUTES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ome_stream.backends.base import Backend
    from ome_stream.layout import Layout

__all__ = [
    "PLANE_KEYS",
    "RESERVED_FRAME_KEYS",
    "MetadataAPI",
    "StreamMetadata",
    "check_frame_metadata",
]

#: Frame-metadata keys placed in OME-XML Plane attributes; their values must be numbers.
PLANE_KEYS = ("delta_t", "exposure_time", "position_x", "position_y", "position_z")
#: Keys the stream records with every frame's metadata; users cannot set them.
RESERVED_FRAME_KEYS = ("frame", "index", "storage_index")


def check_frame_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe copy of one frame's metadata, or a typed error naming the bad key.

    NumPy scalars become Python numbers and tuples lists; anything JSON cannot hold
    (sets, bytes, arrays, other objects, cycles) raises TypeError, NaN and infinities
    raise ValueError (JSON has no such numbers), reserved keys raise ValueError, and the
    OME-XML plane keys (``delta_t``, ``exposure_time``, ``position_x/y/z``) must be
    real numbers.
    """
    checked: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise TypeError(f"frame metadata keys must be strings, got {key!r}")
        if key in RESERVED_FRAME_KEYS:
            raise ValueError(
                f"frame metadata key {key!r} is reserved: the stream records it "
                "(the frame number and its storage index)"
            )
        value = _json_safe(value, key, set())
        if key in PLANE_KEYS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise TypeError(f"frame metadata {key!r} must be a number, got {value!r}")
        checked[key] = value
    return checked


def _json_safe(value: Any, key: str, seen: set[int]) -> Any:
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, bytes | complex):
            raise TypeError(f"frame metadata {key!r}: {value!r} cannot be stored as JSON")
        return _json_safe(value, key, seen)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(
                f"frame metadata {key!r} is {number}: JSON has no NaN or infinity "
                "(store None, or a string, instead)"
            )
        return number
    if isinstance(value, dict | list | tuple):
        if id(value) in seen:
            raise TypeError(f"frame metadata {key!r} contains a reference cycle")
        seen = seen | {id(value)}
        if isinstance(value, dict):
            result = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise TypeError(f"frame metadata {key!r}: keys must be strings, got {k!r}")
                result[k] = _json_safe(v, f"{key}.{k}", seen)
            return result
        return [_json_safe(v, f"{key}[{i}]", seen) for i, v in enumerate(value)]
    hint = " (convert it with .tolist())" if isinstance(value, np.ndarray) else ""
    raise TypeError(
        f"frame metadata {key!r}: a {type(value).__name__} cannot be stored as JSON{hint}"
    )


class StreamMetadata:
    """Frame metadata, global metadata and metadata overrides of one stream."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.frame_metadata: list[list[dict[str, Any]]] = [[] for _ in layout.arrays]
        self.frame_numbers: list[list[int]] = [[] for _ in layout.arrays]
        self.global_metadata: dict[str, Any] = {}
        self.overrides: dict[Any, Any] = {}

    def add_frame(
        self,
        array_index: int,
        frame_number: int,
        storage_index: tuple[int, ...],
        extra: dict[str, Any],
    ) -> None:
        """Record the metadata of one accepted frame, with where the frame is stored.

        The entry is ome-writers': the metadata plus ``storage_index`` (the frame's index
        along the non-frame axes, in storage order); the acquisition frame number is kept
        beside it, for backends that order frame metadata across images.
        """
        self.frame_metadata[array_index].append({**extra, "storage_index": list(storage_index)})
        self.frame_numbers[array_index].append(frame_number)

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
            final_shapes,
            self.frame_metadata,
            dict(self.global_metadata),
            dict(self.overrides),
            self.frame_numbers,
        )

    def documents(self, record: AcquisitionRecord) -> dict[Any, Any]:
        """The metadata as it would be written from ``record`` (see ``get_metadata``)."""
        return current_metadata(self.layout, record)

    def update(self, metadata: Mapping[Any, Any], known: Mapping[Any, Any]) -> None:
        """Replace documents of ``known`` (the current ones) by those of ``metadata``.

        Every entry is checked before any is stored, so a bad one changes nothing.
        """
        self.overrides.update(accept_update(self.layout, known, metadata))


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
        if self._backend is not None:
            self._backend.set_global_metadata(namespace, self.metadata.global_metadata[namespace])
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
            try:
                await self._backend.rewrite_metadata(self._record())
            except Exception as err:  # storage failed: typed like every storage failure
                raise WriterError(f"cannot rewrite the metadata of the dataset: {err}") from err
