"""The library's logger, ``logging.getLogger("ome_stream")``; silent unless configured.

It tells the opening (resolved format and backend) and closing of each stream, the
drain progress at close, warnings and storage errors. Enable it with e.g.
``logging.basicConfig(level=logging.INFO)`` or a handler on the ``ome_stream`` logger.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["log_closed", "log_closing", "log_opening", "logger"]

logger = logging.getLogger("ome_stream")
logger.addHandler(logging.NullHandler())


def log_opening(stream: Any) -> None:
    """INFO: a stream opens, with its resolved format and backend."""
    settings, layout = stream.settings, stream.layout
    logger.info(
        "opening %r: format %s, backend %s, %s frames of %s %s, %d array(s), buffer %d frames",
        settings.output_path, settings.file_format, settings.backend,
        settings.num_frames if settings.num_frames is not None else "unbounded",
        "x".join(map(str, layout.frame_shape)), layout.dtype, len(layout.arrays),
        stream.capacity,
    )  # fmt: skip


def log_closing(stream: Any) -> None:
    """INFO: a stream starts closing; how much is left to drain."""
    stats = stream.stats
    logger.info(
        "closing %r: %d frames accepted, %d written, %d to drain",
        stream.settings.output_path, stats.frames_accepted, stats.frames_written,
        stats.frames_accepted - stats.frames_written,
    )  # fmt: skip


def log_closed(stream: Any, failure: BaseException | None) -> None:
    """INFO when a stream closed cleanly, ERROR after a storage failure."""
    stats = stream.stats
    if failure is None:
        logger.info(
            "closed %r: %d frames written in %.2f s", stream.settings.output_path,
            stats.frames_written, time.perf_counter() - stats.started,
        )  # fmt: skip
    else:
        logger.error(
            "closed %r after a storage failure: %d of %d frames written (%r)",
            stream.settings.output_path, stats.frames_written, stats.frames_accepted, failure,
        )  # fmt: skip
