"""pymmcore-plus integration: stream a Micro-Manager MDA into OME-Zarr or OME-TIFF.

:class:`OMEStreamHandler` is a pymmcore-plus data handler (it has ``sequenceStarted``,
``frameReady`` and ``sequenceFinished``). Connect it to the core with
:meth:`OMEStreamHandler.connected` so that its callbacks run on the MDA thread: when
storage is slower than the camera, ``frameReady`` waits for room in the stream's buffer,
and so the acquisition waits too, instead of piling frames up in memory::

    handler = OMEStreamHandler("run.ome.zarr")
    with handler.connected(core):
        core.mda.run(sequence)

``core.mda.run(sequence, output=handler)`` works as well, but pymmcore-plus then calls
the handler from its relay thread, which queues frames without bound: the acquisition
never waits for storage (see docs/pymmcore-plus.md).

Each frame is placed by its event's index (a skipped event leaves its frame at the fill
value), with per-frame metadata; pymmcore-plus' summary metadata is stored as global
metadata under the ``pymmcore_plus`` namespace. pymmcore-plus is imported only by
:meth:`OMEStreamHandler.connected`, so this module imports without it.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ome_stream.settings import AcquisitionSettings, dims_from_standard_axes
from ome_stream.sync import create_stream
from ome_stream.useq import useq_to_acquisition_settings

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    import numpy as np

    from ome_stream.sync import OMEStream

__all__ = ["OMEStreamHandler", "frame_metadata", "mda_settings"]

logger = logging.getLogger(__name__)

EventKey = tuple[tuple[str, int], ...]


def mda_settings(
    sequence: Any,
    summary: Mapping[str, Any],
    root_path: str,
    *,
    chunk_shapes: Mapping[str, int] | None = None,
    shard_shapes: Mapping[str, int] | None = None,
    units: Mapping[str, tuple[float, str] | None] | None = None,
    **settings: Any,
) -> AcquisitionSettings:
    """The settings that store ``sequence`` as pymmcore-plus acquires it.

    Parameters
    ----------
    sequence
        The ``useq.MDASequence`` being run. pymmcore-plus' placeholder for a plain
        iterator of events (``GeneratorMDASequence``, no known size) gets an unbounded
        ``t`` axis: frames are stored in the order they arrive.
    summary
        pymmcore-plus' summary metadata (the ``meta`` of ``sequenceStarted``); its first
        ``image_infos`` entry gives the frame width, height, dtype and pixel size.
    root_path
        Where to write (``.ome.zarr`` or ``.ome.tiff``).
    chunk_shapes, shard_shapes, units
        As for :func:`~ome_stream.useq_to_acquisition_settings` (by axis name: ``t``,
        ``c``, ``z``, ``y``, ``x``).
    **settings
        Any other :class:`~ome_stream.AcquisitionSettings` field (``format``,
        ``compression``, ``overwrite``, ...).

    Returns
    -------
    AcquisitionSettings

    Raises
    ------
    ValueError
        The summary has no image information, the camera has several channels
        (multi-camera), or the settings are invalid.
    NotImplementedError
        The sequence's frames fill no rectangular array per position (see
        :func:`~ome_stream.useq_to_acquisition_settings`).

    """
    infos = summary.get("image_infos") or ()
    if not infos:
        raise ValueError("pymmcore-plus summary metadata has no 'image_infos': no frame size")
    info = infos[0]
    if info.get("num_camera_adapter_channels", 1) > 1:
        raise ValueError(
            f"the camera has {info['num_camera_adapter_channels']} channels (a multi-camera "
            "adapter); OMEStreamHandler stores one image per event"
        )
    width, height, dtype = int(info["width"]), int(info["height"]), str(info["dtype"])
    pixel_size = float(info.get("pixel_size_um") or 0) or None
    if type(sequence).__name__ == "GeneratorMDASequence":
        scales = {"y": pixel_size, "x": pixel_size} if pixel_size else None
        dims = dims_from_standard_axes(
            {"t": None, "y": height, "x": width},
            chunk_shapes=chunk_shapes,
            shard_shapes=shard_shapes,
            scales=scales,
        )
        return AcquisitionSettings(root_path=root_path, dtype=dtype, dimensions=dims, **settings)
    fields = useq_to_acquisition_settings(
        sequence,
        width,
        height,
        pixel_size_um=pixel_size,
        chunk_shapes=chunk_shapes,
        shard_shapes=shard_shapes,
        units=units,
    )
    return AcquisitionSettings(root_path=root_path, dtype=dtype, **fields, **settings)


def _event_key(event: Any) -> EventKey:
    return tuple(sorted((str(getattr(k, "value", k)), int(v)) for k, v in event.index.items()))


def _frame_numbers(sequence: Any) -> dict[EventKey, int] | None:
    """Frame number of each image event's index; None when the events are not known."""
    if type(sequence).__name__ == "GeneratorMDASequence":
        return None
    import useq

    events = (e for e in sequence if isinstance(e.action, useq.AcquireImage))
    return {_event_key(event): n for n, event in enumerate(events)}


def frame_metadata(event: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The per-frame metadata stored for one pymmcore-plus frame.

    Times in seconds (``delta_t`` since the sequence started, ``exposure_time``), stage
    positions in micrometers, the event's index and channel, and the camera.
    """
    record: dict[str, Any] = {"event_index": dict(_event_key(event))}
    if (runner_ms := meta.get("runner_time_ms")) is not None:
        record["delta_t"] = float(runner_ms) / 1000
    if (exposure_ms := meta.get("exposure_ms")) is not None:
        record["exposure_time"] = float(exposure_ms) / 1000
    for axis, value in (meta.get("position") or {}).items():
        if axis in ("x", "y", "z") and value is not None:
            record[f"position_{axis}"] = float(value)
    if event.channel is not None:
        record["channel"] = event.channel.config
    if camera := meta.get("camera_device"):
        record["camera"] = camera
    return record


def _summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    """pymmcore-plus' summary metadata as plain JSON values."""
    sequence = meta.get("mda_sequence")
    summary = dict(meta)
    if sequence is not None and hasattr(sequence, "model_dump"):
        summary["mda_sequence"] = sequence.model_dump(mode="json", exclude_unset=True)
    result: dict[str, Any] = json.loads(json.dumps(summary, default=str))
    return result


class OMEStreamHandler:
    """Stream the frames of a pymmcore-plus MDA into OME-Zarr or OME-TIFF.

    Parameters
    ----------
    root_path
        Where to write: ``.ome.zarr`` or ``.ome.tiff`` (a directory of per-position
        files for several positions, as for any ome-stream TIFF output).
    max_buffer_bytes
        Bytes of accepted frames that may wait for storage before ``frameReady`` (and,
        when :meth:`connected`, the acquisition) waits; default the stream's.
    **settings
        Further settings for :func:`mda_settings` (``overwrite``, ``compression``,
        ``chunk_shapes``, ``shard_shapes``, ``backend``, ...).

    Notes
    -----
    A failure (bad settings, storage error, a frame whose event is not in the sequence)
    is kept in :attr:`error`, logged, and ends the stream; later frames are counted in
    :attr:`frames_dropped`. When :meth:`connected`, the MDA is cancelled and the error
    raised when the ``with`` block ends; otherwise call :meth:`raise_if_failed`.

    Examples
    --------
    >>> handler = OMEStreamHandler("run.ome.zarr", overwrite=True)  # doctest: +SKIP
    >>> with handler.connected(core):  # doctest: +SKIP
    ...     core.mda.run(sequence)

    """

    def __init__(
        self, root_path: str | Path, *, max_buffer_bytes: int | None = None, **settings: Any
    ) -> None:
        self.root_path = str(root_path)
        self._options = settings
        self._max_buffer_bytes = max_buffer_bytes
        self.settings: AcquisitionSettings | None = None
        """The settings of the current (or last) run, known once it starts."""
        self.stream: OMEStream | None = None
        """The open stream while a sequence runs."""
        self.error: BaseException | None = None
        """The first failure of the current (or last) run."""
        self.frames_dropped = 0
        """Frames received after a failure, not stored."""
        self._frames: dict[EventKey, int] | None = None
        self._next = 0
        self._core: Any = None

    # ---------------------------------------------------------------- MDA callbacks
    def sequenceStarted(self, sequence: Any, meta: Mapping[str, Any]) -> None:
        """Open the stream for ``sequence`` (pymmcore-plus callback)."""
        if self.stream is not None:
            self._fail(RuntimeError("a sequence started while the previous one is still open"))
            return
        self.error, self.frames_dropped, self._next = None, 0, 0
        try:
            self.settings = mda_settings(sequence, meta, self.root_path, **self._options)
            self._frames = _frame_numbers(sequence)
            self.stream = create_stream(self.settings, max_buffer_bytes=self._max_buffer_bytes)
            self.stream.set_global_metadata("pymmcore_plus", {"summary_metadata": _summary(meta)})
        except Exception as err:
            self._fail(err)
            if self._core is not None:
                raise  # connected: the MDA stops before acquiring anything

    def frameReady(self, image: np.ndarray, event: Any, meta: Mapping[str, Any]) -> None:
        """Store one frame at its event's index (pymmcore-plus callback).

        Blocks while the stream's buffer is full: backpressure.
        """
        stream = self.stream
        if stream is None or self.error is not None:
            self.frames_dropped += 1
            return
        try:
            number = self._frame_number(event)
            if number > self._next:  # events without a frame (skipped) keep the fill value
                stream.skip(frames=number - self._next)
            stream.append(image, frame_metadata=frame_metadata(event, meta))
            self._next = number + 1
        except Exception as err:
            self.frames_dropped += 1
            self._fail(err)

    def sequenceFinished(self, sequence: Any) -> None:
        """Write what is left and close the stream (pymmcore-plus callback)."""
        self.close()

    # ---------------------------------------------------------------- control
    @contextmanager
    def connected(self, core: Any) -> Iterator[OMEStreamHandler]:
        """Receive ``core``'s MDA callbacks directly, on the MDA thread.

        Within the block, every ``core.mda.run(...)`` is stored; a slow storage makes
        the acquisition wait. On leaving, the stream is closed and a failure of the run
        is raised (the MDA was cancelled when it happened).

        Raises
        ------
        ValueError, FileExistsError, WriterError
            The settings, the target or the storage failed.

        """
        from pymmcore_plus.mda import mda_listeners_connected

        self._core = core
        try:
            with mda_listeners_connected(self, mda_events=core.mda.events, asynchronous=False):
                yield self
        except Exception as exc:
            # pymmcore-plus wraps a callback's exception (psygnal's EmitLoopError)
            if self.error is not None and _caused_by(exc, self.error):
                raise self.error from None
            raise
        finally:
            self._core = None
            self.close()
        self.raise_if_failed()

    def close(self) -> None:
        """Close the stream, writing every accepted frame and the final metadata."""
        stream, self.stream = self.stream, None
        if stream is None:
            return
        try:
            stream.close()
        except Exception as err:
            self._fail(err)

    def raise_if_failed(self) -> None:
        """Raise the first failure of the last run, if any."""
        if self.error is not None:
            raise self.error

    def _frame_number(self, event: Any) -> int:
        if self._frames is None:
            return self._next
        key = _event_key(event)
        number = self._frames.get(key)
        if number is None:
            raise ValueError(f"frame for event index {dict(key)}, which is not in the sequence")
        if number < self._next:
            raise ValueError(
                f"frame for event index {dict(key)} (frame {number}) arrived after frame "
                f"{self._next - 1}: frames must come in acquisition order"
            )
        return number

    def _fail(self, err: BaseException) -> None:
        if self.error is None:
            self.error = err
            logger.error("ome-stream: the MDA is not being stored: %s", err)
        if self._core is not None:
            self._core.mda.cancel()
        self.close()


def _caused_by(exc: BaseException, cause: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if seen is cause:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
