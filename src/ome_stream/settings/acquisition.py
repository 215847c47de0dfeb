"""The acquisition settings: what to acquire and where to put it.

Settings may be built incrementally (``AcquisitionSettings()`` then assignments); each
assignment is validated, and every rule that involves the dimensions applies as soon as
they are set. :meth:`AcquisitionSettings.validate_stream_ready` says whether a stream can
be opened.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

import numpy as np
from annotated_types import Len
from pydantic import AfterValidator, BeforeValidator, Field, PositiveInt, model_validator

from ome_stream.settings import _checks
from ome_stream.settings._base import SettingsModel
from ome_stream.settings.dimensions import Dimension, check_dimension_list
from ome_stream.settings.formats import (
    Compression,
    FileFormat,
    Format,
    OmeTiffFormat,
    ome_stem_suffix,
)
from ome_stream.settings.positions import Plate, Position
from ome_stream.settings.pyramid import Pyramid  # noqa: TC001 - pydantic needs it

__all__ = ["AcquisitionSettings"]


def _parse_dtype(value: Any) -> str:
    try:
        dtype = np.dtype(value)
    except Exception as err:  # numpy raises TypeError or ValueError, by input
        raise ValueError(f"Invalid dtype: {value!r}: {err}") from None
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise ValueError(
            f"Invalid dtype: {value!r} is not a supported pixel type (bool, int, uint, float)"
        )
    return str(dtype.name)


DimensionList = Annotated[
    tuple[Dimension, ...], AfterValidator(check_dimension_list), Len(min_length=2, max_length=6)
]


class AcquisitionSettings(SettingsModel):
    """Everything ome-stream needs to know to write an acquisition.

    Examples
    --------
    >>> from ome_stream import dims_from_standard_axes
    >>> settings = AcquisitionSettings(
    ...     root_path="run1.ome.zarr",
    ...     dimensions=dims_from_standard_axes({"t": 10, "y": 64, "x": 64}),
    ...     dtype="uint16",
    ... )
    >>> settings.format.name, settings.backend, settings.shape
    ('ome-zarr', 'tensorstore', (10, 64, 64))

    """

    root_path: Annotated[str, BeforeValidator(str)] = Field(
        default="",
        description="Where to write: a path (or an s3:// URL for OME-Zarr). May be empty "
        "for the scratch (memory) format.",
    )
    dimensions: DimensionList | tuple[()] = Field(
        default=(),
        description="Axes in acquisition order, slowest first; the last two are the frame. "
        "At most one type='position' dimension and 2-5 others. Empty until set.",
    )
    dtype: Annotated[str, BeforeValidator(_parse_dtype)] | Literal[""] = Field(
        default="", description="Pixel type, e.g. 'uint16'. Empty until set."
    )
    format: Format = Field(  # type: ignore[assignment]
        default="auto",
        description="'auto' (from the root_path suffix; scratch without a root_path), "
        "'ome-zarr'/'zarr', 'ome-tiff'/'tiff', 'scratch'/'memory', a backend name, a dict "
        "or a format model (OmeZarrFormat, OmeTiffFormat, ScratchFormat).",
    )
    compression: Compression | None = Field(
        default=None, description="Compression codec; None or 'none' stores raw bytes."
    )
    storage_order: Literal["acquisition", "ome"] | list[str] = Field(
        default="ome",
        description="'ome' (the format's canonical order), 'acquisition', or every "
        "dimension name in the order to store them (the frame last, unpermuted).",
    )
    plate: Plate | None = Field(
        default=None,
        description="Plate geometry; needs a position dimension whose positions all name "
        "their well.",
    )
    overwrite: bool = Field(
        default=False, description="Replace an existing dataset at the output path."
    )
    pyramid: Pyramid | None = Field(
        default=None, description="Multiscale levels to write during the acquisition."
    )
    storage_options: dict[str, str] | None = Field(
        default=None,
        description="For s3:// roots: 'endpoint' and 'region' (default: the standard AWS "
        "environment variables), 'timeout' (seconds one storage request may take, default "
        "30). Credentials come from the AWS environment or profile.",
    )
    max_buffer_bytes: PositiveInt | None = Field(
        default=None,
        description="Byte budget for accepted-but-unwritten frames (default 256 MiB, and "
        "always room for at least 2 frames).",
    )

    # ----------------------------------------------------------------- validation
    def __setattr__(self, name: str, value: Any) -> None:
        """Assign and validate; a rejected assignment leaves the settings as they were."""
        before = dict(self.__dict__)
        try:
            super().__setattr__(name, value)
        except (ValueError, NotImplementedError):
            object.__setattr__(self, "__dict__", before)
            raise

    @model_validator(mode="before")
    @classmethod
    def _pick_format(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "backend" in data:
            raise ValueError(
                "`backend` is no longer a top-level field in AcquisitionSettings. Please "
                "specify backend within the `format` field, or pass the backend name "
                "directly as the `format` value."
            )
        data = dict(data)
        root = str(data.get("root_path", ""))
        _, suffix = ome_stem_suffix(root.rstrip("/"))
        fmt = data.get("format")
        fmt = "auto" if fmt is None else fmt
        if isinstance(fmt, dict):
            if suffix and fmt.get("name") != "scratch":
                data["format"] = {"suffix": suffix, **fmt}
        elif fmt == "auto":
            data["format"] = _checks.format_from_root(root, suffix)
        elif isinstance(fmt, str):
            data["format"] = {"_backend_str": fmt, "suffix": suffix}
        return data

    @model_validator(mode="after")
    def _validate(self) -> AcquisitionSettings:
        _checks.check_root(self)
        if not self.dimensions:
            return self
        _checks.check_storage_order(self)
        _checks.check_positions(self)
        _checks.check_backend(self)
        return self

    def validate_stream_ready(self) -> Literal[True]:
        """Return True if a stream can be opened with these settings, else raise.

        Raises
        ------
        ValueError
            ``dimensions`` or ``dtype`` is not set yet, or a format that writes files
            has no ``root_path``.
        NotImplementedError
            OME-TIFF with ``prefer_single_file="always"`` and several positions.

        """
        if not self.dimensions:
            raise ValueError("settings.dimensions must be set before creating a stream")
        if not self.dtype:
            raise ValueError("settings.dtype must be set before creating a stream")
        if self.format.name != "scratch" and not self.root_path:
            raise ValueError(f"root_path is required for {self.format.name} format.")
        if isinstance(self.format, OmeTiffFormat):
            self.tiff_file_paths()
        return True

    def _dims(self, member: str) -> tuple[Dimension, ...]:
        if not self.dimensions:
            raise ValueError(f"Cannot access '{member}': dimensions has not been set yet.")
        return self.dimensions

    # ----------------------------------------------------------------- derived views
    @property
    def file_format(self) -> FileFormat:
        """The output format: 'ome-zarr', 'ome-tiff' or 'scratch'."""
        return self.format.name

    @property
    def backend(self) -> str:
        """The backend that writes the settings (``format.backend``, 'auto' resolved).

        Raises
        ------
        ImportError
            ``format.backend`` is 'auto' and no backend of the format is installed.

        """
        return _checks.resolve_backend(self)

    @property
    def shape(self) -> tuple[int | None, ...]:
        """The count of every dimension, position dimension included."""
        return tuple(d.count for d in self._dims("shape"))

    @property
    def is_unbounded(self) -> bool:
        """Whether the first dimension is unbounded."""
        return self._dims("is_unbounded")[0].count is None

    @property
    def num_frames(self) -> int | None:
        """Total number of frames, or None when the first dimension is unbounded."""
        total = 1
        for dim in self._dims("num_frames")[:-2]:
            if dim.count is None:
                return None
            total *= dim.count
        return total

    @property
    def position_dimension_index(self) -> int | None:
        """Index of the position dimension in ``dimensions``, or None."""
        dims = self._dims("position_dimension_index")
        return next((i for i, d in enumerate(dims[:-2]) if d.type == "position"), None)

    @property
    def position_dimension(self) -> Dimension | None:
        """The position dimension, if the acquisition visits several positions."""
        index = self.position_dimension_index
        return None if index is None else self.dimensions[index]

    @property
    def positions(self) -> tuple[Position, ...]:
        """Positions in acquisition order (one position named '0' when there is none)."""
        self._dims("positions")
        dim = self.position_dimension
        if dim is None or not dim.coords:
            return (Position(name="0"),)
        # a position dimension's coords are cast to Position objects when it is made
        return tuple(c for c in dim.coords if isinstance(c, Position))

    @property
    def frame_dimensions(self) -> tuple[Dimension, ...]:
        """The two in-frame dimensions (usually y, x)."""
        return self._dims("frame_dimensions")[-2:]

    @property
    def frame_shape(self) -> tuple[int, int]:
        """Shape of one frame."""
        y, x = self.frame_dimensions
        assert y.count is not None and x.count is not None
        return y.count, x.count

    @property
    def index_dimensions(self) -> tuple[Dimension, ...]:
        """Non-frame array dimensions (no position dimension), in acquisition order."""
        dims = self._dims("index_dimensions")
        return tuple(d for d in dims[:-2] if d.type != "position")

    @property
    def array_dimensions(self) -> tuple[Dimension, ...]:
        """Every dimension except the position dimension, in acquisition order."""
        return tuple(d for d in self._dims("array_dimensions") if d.type != "position")

    @property
    def storage_index_dimensions(self) -> tuple[Dimension, ...]:
        """Non-frame array dimensions in storage order."""
        self._dims("storage_index_dimensions")
        return _checks.storage_sorted(self.index_dimensions, self.storage_order, self.file_format)

    @property
    def array_storage_dimensions(self) -> tuple[Dimension, ...]:
        """Every array dimension (no position dimension) in storage order."""
        return self.storage_index_dimensions + self.frame_dimensions

    @property
    def storage_permutation(self) -> tuple[int, ...]:
        """For each storage axis, the acquisition axis it comes from (non-frame axes)."""
        names = [d.name for d in self.index_dimensions]
        return tuple(names.index(d.name) for d in self.storage_index_dimensions)

    @property
    def storage_index_permutation(self) -> tuple[int, ...] | None:
        """:attr:`storage_permutation`, or None when storage order is acquisition order."""
        permutation = self.storage_permutation
        return None if permutation == tuple(range(len(permutation))) else permutation

    @property
    def output_path(self) -> str:
        """The root of the data written: a zarr group, an OME-TIFF file, or a directory.

        The root path's stem with the format's suffix; OME-TIFF writes a directory of one
        file per position when it does not write a single file.
        """
        self._dims("output_path")
        root = self.root_path.rstrip("/") or self.root_path
        return self.format.get_output_path(root, num_positions=len(self.positions))

    def tiff_file_paths(self) -> list[str]:
        """The OME-TIFF file written for each position, in position order.

        Raises
        ------
        NotImplementedError
            ``prefer_single_file="always"`` with several positions (one file per position
            is the only multi-position layout written).

        """
        fmt = self.format
        assert isinstance(fmt, OmeTiffFormat)
        root = self.output_path
        count = len(self.positions)
        if fmt.single_file(count):
            if count > 1:
                raise NotImplementedError(
                    "Single-file structure with multiple positions is not yet supported: "
                    f"{count} positions with prefer_single_file='always'; use 'auto' or "
                    "'never' (one file per position)"
                )
            return [root]
        stem = PurePosixPath(root.replace("\\", "/")).name
        width = max(3, len(str(count - 1)))
        sep = "\\" if "\\" in root else "/"
        return [f"{root}{sep}{stem}_p{i:0{width}d}{fmt.suffix}" for i in range(count)]
