"""A pure-Python microscope for real pymmcore-plus MDAs (no Micro-Manager install).

``make_core()`` returns a ``UniMMCore`` with a camera, an XY stage, a Z stage, a filter
wheel (the ``Channel`` config group) and a shutter, all Python devices. The camera's
``n``-th snapped image is :func:`expected_frame` ``(n, ...)``, so each stored frame names
the snap it came from, and :attr:`Camera.log` records where the hardware was for that
snap (channel, x, y, z). A test runs ``core.mda.run(sequence, ...)``, then checks that
snap ``n`` happened at the ``n``-th image event of the sequence and landed at that
event's index in the output.

Run as a script (``python tests/_mmcore.py SPEC.json``) it performs one MDA with
pymmcore-plus' built-in writer, with ``sys.modules["ome_writers"]`` pointing at the
spec's target module (``ome_stream``) first, unless the target is ``ome_writers``
itself, and writes the camera log next to the spec (``SPEC.log.json``).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping

    import useq

HEIGHT, WIDTH = 24, 32  # not square: a transposed frame cannot pass
DTYPE = "uint16"
CHANNELS = ("DAPI", "FITC", "Cy5")
PIXEL_SIZE_UM = 0.5


def expected_frame(n: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """The image of the camera's ``n``-th snap (0-based).

    Two snaps ``n != m`` (|n - m| < 65536) differ at every pixel, because the per-snap
    offset is an odd multiple of ``n`` modulo 2**16; the gradient catches flips.
    """
    yy, xx = np.mgrid[0:height, 0:width]
    return ((n + 1) * 4099 + yy * width + xx).astype(np.uint64).__mod__(65536).astype(DTYPE)


def snap_number(frame: np.ndarray) -> int:
    """Invert :func:`expected_frame` (checks the whole frame matches)."""
    n = ((int(frame[0, 0]) - 4099) * pow(4099, -1, 65536)) % 65536
    if not np.array_equal(frame, expected_frame(n, *frame.shape)):
        raise AssertionError(f"frame is not a camera snap (first pixel {int(frame[0, 0])})")
    return n


def make_core() -> Any:
    """A ``UniMMCore`` with Python devices only, ready for ``core.mda.run``."""
    from pymmcore_plus.experimental.unicore import (
        ShutterDevice,
        SimpleCameraDevice,
        StageDevice,
        StateDevice,
        UniMMCore,
        XYStageDevice,
    )

    class XYStage(XYStageDevice):
        def __init__(self) -> None:
            super().__init__()
            self.xy = (0.0, 0.0)

        def set_position_um(self, x: float, y: float) -> None:
            self.xy = (x, y)

        def get_position_um(self) -> tuple[float, float]:
            return self.xy

        def set_origin_x(self) -> None:
            self.xy = (0.0, self.xy[1])

        def set_origin_y(self) -> None:
            self.xy = (self.xy[0], 0.0)

        def home(self) -> None:
            self.xy = (0.0, 0.0)

        def stop(self) -> None:
            pass

    class ZStage(StageDevice):
        def __init__(self) -> None:
            super().__init__()
            self.z = 0.0

        def set_position_um(self, val: float) -> None:
            self.z = val

        def get_position_um(self) -> float:
            return self.z

        def set_origin(self) -> None:
            self.z = 0.0

        def home(self) -> None:
            self.z = 0.0

        def stop(self) -> None:
            pass

    class FilterWheel(StateDevice):
        def __init__(self) -> None:
            super().__init__(dict(enumerate(CHANNELS)))
            self.state = 0

        def get_state(self) -> int:
            return self.state

        def set_state(self, position: int) -> None:
            self.state = position

    class Shutter(ShutterDevice):
        def __init__(self) -> None:
            super().__init__()
            self.open = False

        def get_open(self) -> bool:
            return self.open

        def set_open(self, open: bool) -> None:
            self.open = open

    class Camera(SimpleCameraDevice):
        def __init__(self) -> None:
            super().__init__()
            self.exposure = 10.0
            self.log: list[dict[str, Any]] = []

        def get_exposure(self) -> float:
            return self.exposure

        def set_exposure(self, exposure: float) -> None:
            self.exposure = exposure

        def sensor_shape(self) -> tuple[int, int]:
            return (HEIGHT, WIDTH)

        def dtype(self) -> str:
            return DTYPE

        def snap(self, buffer: np.ndarray) -> Mapping[str, Any]:
            n = len(self.log)
            buffer[:] = expected_frame(n)
            x, y = xy.xy
            self.log.append(
                {
                    "channel": CHANNELS[wheel.state],
                    "x": x,
                    "y": y,
                    "z": z.z,
                    "exposure_ms": self.exposure,
                }
            )
            return {}

    xy, z, wheel, shutter, camera = XYStage(), ZStage(), FilterWheel(), Shutter(), Camera()
    core = UniMMCore()
    for label, device in (
        ("XY", xy),
        ("Z", z),
        ("Wheel", wheel),
        ("Shutter", shutter),
        ("Camera", camera),
    ):
        core.loadPyDevice(label, device)
        core.initializeDevice(label)
    core.setXYStageDevice("XY")
    core.setFocusDevice("Z")
    core.setShutterDevice("Shutter")
    core.setCameraDevice("Camera")
    core.setAutoShutter(True)
    for name in CHANNELS:
        core.defineConfig("Channel", name, "Wheel", "Label", name)
    core.setChannelGroup("Channel")
    core.definePixelSizeConfig("px")
    core.setPixelSizeUm("px", PIXEL_SIZE_UM)
    core.setPixelSizeConfig("px")
    core.camera = camera  # the tests read camera.log
    return core


def image_events(sequence: useq.MDASequence) -> list[useq.MDAEvent]:
    """The events of ``sequence`` that produce a frame, in acquisition order."""
    import useq

    return [e for e in sequence if isinstance(e.action, useq.AcquireImage)]


def check_log(sequence: useq.MDASequence, log: list[dict[str, Any]]) -> None:
    """Snap ``n`` happened at the ``n``-th image event, with the hardware where it says."""
    events = image_events(sequence)
    assert len(log) == len(events), (len(log), len(events))
    for n, (event, entry) in enumerate(zip(events, log, strict=True)):
        where = f"snap {n} (event index {dict(event.index)})"
        if event.channel is not None:
            assert entry["channel"] == event.channel.config, where
        for axis, value in (("x", event.x_pos), ("y", event.y_pos), ("z", event.z_pos)):
            if value is not None:
                assert entry[axis] == value, (where, axis, entry[axis], value)


# --------------------------------------------------------------------- script mode
def _run_spec(spec_path: Path) -> None:
    """Run one MDA as described by a JSON spec (see ``tests/test_pymmcore.py``)."""
    spec = json.loads(spec_path.read_text())
    if spec["target"] != "ome_writers":  # stand a module (ome_stream) in for ome_writers
        sys.modules["ome_writers"] = importlib.import_module(spec["target"])
    import useq

    core = make_core()
    events: Any
    if "events" in spec:  # a plain iterator of events: no sequence, unknown size
        events = iter([useq.MDAEvent.model_validate(e) for e in spec["events"]])
    else:
        events = useq.MDASequence.model_validate(spec["sequence"])
    core.mda.run(events, output=spec["output"], overwrite=spec.get("overwrite", False))
    result: dict[str, Any] = {
        "log": core.camera.log,
        "ome_writers": sys.modules["ome_writers"].__name__,
    }
    if spec["output"] == "memory":
        view = core.mda.get_view()
        result["view_shape"] = list(view.shape)
        data = np.asarray(view[:])
        np.save(spec_path.with_suffix(".view.npy"), data)
    spec_path.with_suffix(".log.json").write_text(json.dumps(result))


if __name__ == "__main__":
    _run_spec(Path(sys.argv[1]))
