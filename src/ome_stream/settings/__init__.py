"""The declarative settings model: what to acquire and where to put it.

One module per concept: :mod:`.dimensions` (Dimension, StandardAxis), :mod:`.positions`
(Position, Plate), :mod:`.channels`, :mod:`.formats`, :mod:`.units`, :mod:`.pyramid` and
:mod:`.acquisition` (AcquisitionSettings). Users import these names from ``ome_stream``.
"""

from ome_stream.settings.acquisition import AcquisitionSettings
from ome_stream.settings.channels import Channel
from ome_stream.settings.dimensions import (
    Dimension,
    DimensionType,
    PositionDimension,
    StandardAxis,
    dims_from_standard_axes,
)
from ome_stream.settings.formats import (
    Compression,
    FileFormat,
    OmeTiffFormat,
    OmeZarrFormat,
    OutputFormat,
    ScratchFormat,
)
from ome_stream.settings.positions import Plate, Position
from ome_stream.settings.pyramid import Pyramid

__all__ = [
    "AcquisitionSettings",
    "Channel",
    "Compression",
    "Dimension",
    "DimensionType",
    "FileFormat",
    "OmeTiffFormat",
    "OmeZarrFormat",
    "OutputFormat",
    "Plate",
    "Position",
    "PositionDimension",
    "Pyramid",
    "ScratchFormat",
    "StandardAxis",
    "dims_from_standard_axes",
]
