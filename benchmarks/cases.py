"""The standard benchmark cases and the writers compared on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    """One acquisition to write: dimensions (name, count, chunk), dtype, codec, format."""

    name: str
    title: str
    dims: tuple[tuple[Any, ...], ...]
    """(name, count, chunk[, shard_size_chunks]) per dimension."""
    frames: int
    compression: str | None = None
    fmt: str = "ome-zarr"
    pyramid: int = 0  # levels (0: none)

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self.dims[-2][1] or 0, self.dims[-1][1] or 0)

    @property
    def frame_bytes(self) -> int:
        return self.frame_shape[0] * self.frame_shape[1] * 2


FULL = {
    "A": Case(
        "A",
        "100 x 2048^2 u16, chunks 512^2, raw",
        (("t", 100, 1), ("y", 2048, 512), ("x", 2048, 512)),
        100,
    ),
    "B": Case(
        "B",
        "t200 c2 z10 x 512^2, chunks 256^2",
        (("t", 200, 1), ("c", 2, 1), ("z", 10, 1), ("y", 512, 256), ("x", 512, 256)),
        4000,
    ),
    "C": Case(
        "C",
        "A with blosc-zstd, camera-like frames",
        (("t", 100, 1), ("y", 2048, 512), ("x", 2048, 512)),
        100,
        "blosc-zstd",
    ),
    "D": Case(
        "D", "unbounded t, 200 x 1024^2", (("t", None, 1), ("y", 1024, 512), ("x", 1024, 512)), 200
    ),
    "E": Case(
        "E",
        "5000 x 256^2 (small frames, high rate)",
        (("t", 5000, 1), ("y", 256, 256), ("x", 256, 256)),
        5000,
    ),
    "E64": Case(
        "E64",
        "E with shards of 64 frames along t",
        (("t", 5000, 1, 64), ("y", 256, 256), ("x", 256, 256)),
        5000,
    ),
    "F1": Case(
        "F1",
        "OME-TIFF A",
        (("t", 100, 1), ("y", 2048, 2048), ("x", 2048, 2048)),
        100,
        fmt="ome-tiff",
    ),
    "F2": Case(
        "F2",
        "OME-TIFF C (zstd)",
        (("t", 100, 1), ("y", 2048, 2048), ("x", 2048, 2048)),
        100,
        "zstd",
        fmt="ome-tiff",
    ),
    "P": Case(
        "P",
        "A with a 3-level mean pyramid",
        (("t", 100, 1), ("y", 2048, 512), ("x", 2048, 512)),
        100,
        pyramid=3,
    ),
}

QUICK = {
    "A": Case("A", "quick A", (("t", 6, 1), ("y", 128, 64), ("x", 128, 64)), 6),
    "E64": Case("E64", "quick E64", (("t", 40, 1, 8), ("y", 64, 64), ("x", 64, 64)), 40),
    "C": Case("C", "quick C", (("t", 6, 1), ("y", 128, 64), ("x", 128, 64)), 6, "blosc-zstd"),
    "D": Case("D", "quick D", (("t", None, 1), ("y", 64, 64), ("x", 64, 64)), 10),
    "F1": Case(
        "F1", "quick F1", (("t", 6, 1), ("y", 128, 128), ("x", 128, 128)), 6, fmt="ome-tiff"
    ),
}

# Which writers run on which formats. "disk" is measured once before every batch; "files"
# (the chunk files alone, plain Python) on the cases that store one object per chunk.
# ome-stream/*: the async core (`open_stream`); sync/*: our drop-in facade
# (`create_stream`); ome-writers/*: the peer, run in its own virtualenv; raw/*: the engine
# alone with the same chunks, shards and codec.
ZARR_WRITERS = (
    "ome-stream/tensorstore",
    "ome-stream/zarr-python",
    "ome-stream/acquire-zarr",
    "sync/tensorstore",
    "ome-writers/tensorstore",
    "ome-writers/zarr-python",
    "ome-writers/zarrs-python",
    "ome-writers/acquire-zarr",
    "raw/tensorstore",
    "raw/acquire-zarr",
)
TIFF_WRITERS = (
    "ome-stream/tifffile",
    "sync/tifffile",
    "ome-writers/tifffile",
    "raw/tifffile",
)


# Left out of the standard run to keep it under ~25 minutes on this machine: the slowest
# writer by far on these cases (2026-11-24: 0.084 GB/s on B and 0.016 GB/s on E64, 25-40 s a
# run, 2-20x below the best peer). ``--all`` puts them back.
SLOW = {("B", "ome-writers/zarr-python"), ("E64", "ome-writers/zarr-python")}


def writers_for(case: Case, everything: bool = False) -> tuple[str, ...]:
    """The writers that can write ``case`` (without :data:`SLOW` unless ``everything``)."""
    if case.pyramid:
        return ("ome-stream/tensorstore",)
    writers = TIFF_WRITERS if case.fmt == "ome-tiff" else ZARR_WRITERS
    if case.fmt == "ome-zarr" and not case.compression and all(len(d) < 4 for d in case.dims):
        writers = (*writers, "files")  # one uncompressed object per chunk: its floor
    return tuple(w for w in writers if everything or (case.name, w) not in SLOW)
