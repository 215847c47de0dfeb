"""The metadata API of a stream: ``get_metadata`` and ``update_metadata``.

What ``get_metadata`` returns and what ``update_metadata`` accepts, with ome-writers'
keys and errors.

OME-Zarr: ``{image key: attributes}`` — '.' for a single image (the root group), the
series name (``Pos0``, ``Pos0_0_1`` for a grid position) for a position, and
``<row>/<column>/<field>`` for a plate field. OME-TIFF: ``{position index:
ome_types.OME}``, the document of each position's file, plus
:data:`~ome_stream.metadata.ome_xml.COMPANION_INDEX` (-1) for the companion file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ome_stream.metadata.ngff import group_attributes, group_documents

# ome_types (and pint beneath it) take most of a second to import: only OME-TIFF needs
# them, so they are imported where a TIFF document is made or checked, never for OME-Zarr
if TYPE_CHECKING:
    from ome_stream.layout import AcquisitionRecord, Layout

__all__ = ["accept_update", "current_metadata"]


def current_metadata(layout: Layout, record: AcquisitionRecord) -> dict[Any, Any]:
    """The metadata documents as they would be written now (copies: edit them freely)."""
    if layout.settings.file_format == "ome-tiff":
        from ome_stream.metadata.ome_xml import tiff_documents

        return {k: d.model_copy(deep=True) for k, d in tiff_documents(layout, record).items()}
    attributes: dict[Any, Any] = json.loads(
        json.dumps(group_attributes(group_documents(layout, record)))
    )
    return attributes


def accept_update(layout: Layout, known: Mapping[Any, Any], metadata: Any) -> dict[Any, Any]:
    """Check an ``update_metadata`` argument against the ``known`` documents.

    Returns the entries to store in ``AcquisitionRecord.overrides``. Everything is
    checked before anything is returned, so a bad entry changes nothing.

    Raises
    ------
    TypeError
        ``metadata`` is not a dict, or a value is not an ``ome_types.OME`` (OME-TIFF) or
        a JSON mapping (OME-Zarr).
    KeyError
        A key is not one of ``get_metadata``'s.
    ValueError
        OME-Zarr attributes that cannot be written as JSON.

    """
    if layout.settings.file_format == "ome-tiff":
        from ome_types import OME

        if not isinstance(metadata, dict):
            raise TypeError(
                f"Expected dict[int, ome_types.model.OME] metadata, got {type(metadata)}"
            )
        for index, document in metadata.items():
            if not isinstance(document, OME):
                raise TypeError(
                    f"Expected ome_types.model.OME for position {index}, got {type(document)}"
                )
            if index not in known:
                raise KeyError(f"Unknown position index: {index}; known: {sorted(known)}")
        return {index: document.model_copy(deep=True) for index, document in metadata.items()}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"Expected dict[str, dict] metadata, got {type(metadata)}")
    overrides = {}
    for path, attributes in metadata.items():
        if path not in known:
            raise KeyError(f"Unknown path: {path}; known: {sorted(known)}")
        if not isinstance(attributes, Mapping):
            raise TypeError(f"Expected a dict of attributes for {path!r}, got {type(attributes)}")
        try:
            overrides["" if path == "." else path] = json.loads(json.dumps(attributes))
        except (TypeError, ValueError) as err:
            raise ValueError(f"the attributes of {path!r} are not JSON: {err}") from None
    return overrides
