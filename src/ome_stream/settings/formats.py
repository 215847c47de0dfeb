"""Output formats: OME-Zarr, OME-TIFF and scratch (in-memory) arrays, and their options."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Field, field_validator

from ome_stream.backends.registry import BACKENDS
from ome_stream.settings._base import SettingsModel

__all__ = [
    "Compression",
    "FileFormat",
    "Format",
    "OmeTiffFormat",
    "OmeZarrFormat",
    "OutputFormat",
    "ScratchFormat",
    "ome_stem_suffix",
]

FileFormat: TypeAlias = Literal["ome-zarr", "ome-tiff", "scratch"]
Compression: TypeAlias = Literal["blosc-zstd", "blosc-lz4", "zstd", "zlib", "lzw", "none"]


def _registered_backend(value: str, file_format: str) -> str:
    """``value`` if it is 'auto' or a registered backend writing ``file_format``."""
    if value == "auto" or (value in BACKENDS and BACKENDS[value].format == file_format):
        return value
    able = [name for name, info in BACKENDS.items() if info.format == file_format]
    raise ValueError(f"backend {value!r} does not write {file_format}; use 'auto' or one of {able}")


def ome_stem_suffix(path: str) -> tuple[str, str]:
    """Split ``path`` into its stem and its image suffix (``[.ome].zarr|.tif|.tiff``).

    Examples
    --------
    >>> ome_stem_suffix("data/run.test.ome.tiff")
    ('data/run.test', '.ome.tiff')
    >>> ome_stem_suffix("data/run")
    ('data/run', '')

    """
    lower = path.lower()
    for ext in (".tiff", ".tif", ".zarr"):
        if lower.endswith(ext):
            # the suffix keeps the case it was written in (run.TIFF stays run.TIFF)
            stem, suffix = path[: -len(ext)], path[-len(ext) :]
            if stem.lower().endswith(".ome"):
                return stem[:-4], stem[-4:] + suffix
            return stem, suffix
    return path, ""


class OmeTiffFormat(SettingsModel):
    """OME-TIFF: one file per position (or one file for a single position).

    Examples
    --------
    >>> fmt = OmeTiffFormat(multi_file_metadata="companion-file")
    >>> fmt.get_output_path("a.tif", num_positions=2)
    'a'

    """

    name: Literal["ome-tiff"] = Field(default="ome-tiff", description="Format name.")
    backend: str = Field(
        default="auto", description="'tifffile', or 'auto' for the first installed one."
    )
    suffix: str = Field(default=".ome.tiff", description="Suffix of the file(s) written.")
    prefer_single_file: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="'auto': one file for one position, a directory of one file per "
        "position otherwise; 'always': one file (only for one position); 'never': always "
        "a directory. True/False mean 'always'/'never'.",
    )
    multi_file_metadata: Literal["redundant", "master-tiff", "companion-file"] = Field(
        default="redundant",
        description="With one file per position: 'redundant' (full OME-XML in each file), "
        "'master-tiff' (full OME-XML in the first, references in the others) or "
        "'companion-file' (references in every TIFF, the OME-XML in `companion_file`).",
    )
    companion_file: str = Field(
        default="companion.ome", description="File name of the OME-XML companion file."
    )

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        return _registered_backend(value, "ome-tiff")

    @field_validator("prefer_single_file", mode="before")
    @classmethod
    def _from_bool(cls, value: Any) -> Any:
        return (
            {True: "always", False: "never"}.get(value, value) if isinstance(value, bool) else value
        )

    def single_file(self, num_positions: int) -> bool:
        """Whether the acquisition goes into one file rather than a directory."""
        if self.prefer_single_file == "auto":
            return num_positions <= 1
        return self.prefer_single_file == "always"

    def get_output_path(self, root_path: str, *, num_positions: int = 1) -> str:
        """The file written (single file) or the directory holding the files."""
        stem, _ = ome_stem_suffix(root_path)
        return stem + self.suffix if self.single_file(num_positions) else stem


class OmeZarrFormat(SettingsModel):
    """OME-Zarr v0.5 (zarr v3): one zarr group holding every image.

    Examples
    --------
    >>> OmeZarrFormat(backend="zarr-python").get_output_path("run")
    'run.ome.zarr'

    """

    name: Literal["ome-zarr"] = Field(default="ome-zarr", description="Format name.")
    backend: str = Field(
        default="auto",
        description="'tensorstore', 'zarr-python', 'zarrs-python', 'acquire-zarr', or "
        "'auto' for the first installed one able to write the settings.",
    )
    suffix: str = Field(default=".ome.zarr", description="Suffix of the zarr group.")

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        return _registered_backend(value, "ome-zarr")

    def get_output_path(self, root_path: str, *, num_positions: int = 1) -> str:
        """The zarr group written: the root path's stem with ``suffix``."""
        stem, _ = ome_stem_suffix(root_path)
        return stem + self.suffix


class ScratchFormat(SettingsModel):
    """Scratch arrays: frames kept in memory, spilled to disk past a memory limit.

    Examples
    --------
    >>> ScratchFormat().max_memory_bytes == 4 * 1024**3
    True

    """

    name: Literal["scratch"] = Field(default="scratch", description="Format name.")
    backend: Literal["scratch"] = Field(default="scratch", description="Always 'scratch'.")
    max_memory_bytes: int = Field(
        default=4 * 1024**3,
        description="Memory to use, in bytes. Past it, without a root_path, data spills to "
        "a temporary directory if `spill_to_disk`, else MemoryError is raised.",
    )
    suffix: str = Field(default="", description="Suffix of disk-backed scratch files.")
    spill_to_disk: bool = Field(
        default=True,
        description="Spill to disk when the memory limit is exceeded and no root_path is set.",
    )

    def get_output_path(self, root_path: str, *, num_positions: int = 1) -> str:
        """The root path as given (empty: memory only)."""
        return root_path


_BY_NAME: dict[str, dict[str, str]] = {
    "ome-tiff": {"name": "ome-tiff"},
    "tiff": {"name": "ome-tiff"},
    "tifffile": {"name": "ome-tiff", "backend": "tifffile"},
    "ome-zarr": {"name": "ome-zarr"},
    "zarr": {"name": "ome-zarr"},
    "tensorstore": {"name": "ome-zarr", "backend": "tensorstore"},
    "acquire-zarr": {"name": "ome-zarr", "backend": "acquire-zarr"},
    "zarrs-python": {"name": "ome-zarr", "backend": "zarrs-python"},
    "zarr-python": {"name": "ome-zarr", "backend": "zarr-python"},
    "scratch": {"name": "scratch"},
    "memory": {"name": "scratch"},
}


def _cast_format(value: Any) -> Any:
    """A format or backend name (with the root path's suffix, if any) → a format dict."""
    suffix = ""
    if isinstance(value, dict) and "_backend_str" in value:
        value = dict(value)
        suffix = value.pop("suffix", "")
        value = value.pop("_backend_str")
    if isinstance(value, str):
        known = _BY_NAME.get(value.lower())
        if known is None and value in BACKENDS and BACKENDS[value].format != "scratch":
            known = {"name": BACKENDS[value].format, "backend": value}
        if known is None:
            backends = [n for n, v in _BY_NAME.items() if "backend" in v]
            raise ValueError(
                f"format {value!r} is neither a format ('ome-zarr', 'ome-tiff', 'scratch', "
                f"'auto') nor a backend ({', '.join(backends)})"
            )
        if suffix and known["name"] != "scratch":
            return {**known, "suffix": suffix}
        return dict(known)
    return value


Format: TypeAlias = Annotated[
    OmeTiffFormat | OmeZarrFormat | ScratchFormat,
    BeforeValidator(_cast_format),
    Field(discriminator="name"),
]
"""A format model, or its name, a backend name, or a dict, cast to the model."""

OutputFormat: TypeAlias = OmeTiffFormat | OmeZarrFormat | ScratchFormat
"""Any resolved format model (the type of ``AcquisitionSettings.format``)."""
