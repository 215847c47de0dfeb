"""ome-stream: stream microscope frames into OME-Zarr and OME-TIFF as they are acquired.

Examples
--------
>>> from ome_stream import AcquisitionSettings, dims_from_standard_axes, open_stream
>>> settings = AcquisitionSettings(
...     root_path="run1.ome.zarr",
...     dimensions=dims_from_standard_axes({"t": 10, "y": 512, "x": 512}),
...     dtype="uint16",
... )
>>> async def acquire(camera):                     # doctest: +SKIP
...     async with open_stream(settings) as stream:
...         async for frame in camera:
...             await stream.append(frame)

"""

from ome_stream.backends.registry import available_backends
from ome_stream.errors import DatasetLockedError, OMEStreamError, UnclosedStreamWarning, WriterError
from ome_stream.events import CoordUpdate
from ome_stream.mmcore import OMEStreamHandler
from ome_stream.settings import (
    AcquisitionSettings,
    Channel,
    Dimension,
    OmeTiffFormat,
    OmeZarrFormat,
    OutputFormat,
    Plate,
    Position,
    PositionDimension,
    Pyramid,
    ScratchFormat,
    StandardAxis,
    dims_from_standard_axes,
)
from ome_stream.stream import AsyncOMEStream, StreamStats, open_stream
from ome_stream.sync import OMEStream, create_stream
from ome_stream.useq import dims_from_useq, useq_to_acquisition_settings

__version__ = "0.1.0"

__all__ = [
    "AcquisitionSettings",
    "AsyncOMEStream",
    "Channel",
    "CoordUpdate",
    "DatasetLockedError",
    "Dimension",
    "OMEStream",
    "OMEStreamError",
    "OMEStreamHandler",
    "OmeTiffFormat",
    "OmeZarrFormat",
    "OutputFormat",
    "Plate",
    "Position",
    "PositionDimension",
    "Pyramid",
    "ScratchFormat",
    "StandardAxis",
    "StreamStats",
    "UnclosedStreamWarning",
    "WriterError",
    "__version__",
    "available_backends",
    "create_stream",
    "dims_from_standard_axes",
    "dims_from_useq",
    "open_stream",
    "useq_to_acquisition_settings",
]
