"""A pymmcore-plus MDA streamed into OME-Zarr or OME-TIFF by ``OMEStreamHandler``.

Runs without a microscope or a Micro-Manager install: ``UniMMCore`` drives a few
pure-Python devices (a camera whose n-th image holds the value n, an XY stage, a Z
stage, a filter wheel for the channels, and a shutter). With real hardware, use your
``CMMCorePlus`` (``core.loadSystemConfiguration(...)``) instead of ``demo_core()``.

Usage: python examples/pymmcore_plus_mda.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import useq
from pymmcore_plus.experimental.unicore import (
    ShutterDevice,
    SimpleCameraDevice,
    StageDevice,
    StateDevice,
    UniMMCore,
    XYStageDevice,
)

from ome_stream.mmcore import OMEStreamHandler


class Camera(SimpleCameraDevice):
    """64x64 uint16 frames; the n-th snap is filled with n."""

    snaps = 0
    exposure = 10.0

    def sensor_shape(self):
        return (64, 64)

    def dtype(self):
        return "uint16"

    def get_exposure(self):
        return self.exposure

    def set_exposure(self, exposure):
        self.exposure = exposure

    def snap(self, buffer):
        buffer[:] = self.snaps
        self.snaps += 1
        return {}


class XYStage(XYStageDevice):
    xy = (0.0, 0.0)

    def set_position_um(self, x, y):
        self.xy = (x, y)

    def get_position_um(self):
        return self.xy

    def set_origin_x(self): ...
    def set_origin_y(self): ...
    def home(self): ...
    def stop(self): ...


class ZStage(StageDevice):
    z = 0.0

    def set_position_um(self, val):
        self.z = val

    def get_position_um(self):
        return self.z

    def set_origin(self): ...
    def home(self): ...
    def stop(self): ...


class FilterWheel(StateDevice):
    state = 0

    def get_state(self):
        return self.state

    def set_state(self, position):
        self.state = position


class Shutter(ShutterDevice):
    is_open = False

    def get_open(self):
        return self.is_open

    def set_open(self, open):
        self.is_open = open


def demo_core() -> UniMMCore:
    """A core with the Python devices above, channels DAPI and FITC."""
    core = UniMMCore()
    devices = {
        "Camera": Camera(),
        "XY": XYStage(),
        "Z": ZStage(),
        "Wheel": FilterWheel({0: "DAPI", 1: "FITC"}),
        "Shutter": Shutter(),
    }
    for label, device in devices.items():
        core.loadPyDevice(label, device)
        core.initializeDevice(label)
    core.setCameraDevice("Camera")
    core.setXYStageDevice("XY")
    core.setFocusDevice("Z")
    core.setShutterDevice("Shutter")
    for name in ("DAPI", "FITC"):
        core.defineConfig("Channel", name, "Wheel", "Label", name)
    core.setChannelGroup("Channel")
    return core


#: 3 time points; at each, two stage positions; at each, 2 channels of a 3-plane z stack
SEQUENCE = useq.MDASequence(
    time_plan={"interval": 0, "loops": 3},
    stage_positions=[(0, 0, 0), useq.Position(x=500, y=500, z=0, name="cellB")],
    channels=["DAPI", "FITC"],
    z_plan={"range": 2, "step": 1},
    axis_order="tpcz",
)


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    suffix = ".ome.zarr" if fmt == "ome-zarr" else ".ome.tiff"
    core = demo_core()
    handler = OMEStreamHandler(Path(output_dir) / f"mda{suffix}", overwrite=True)
    with handler.connected(core):  # callbacks on the MDA thread: storage paces the camera
        core.mda.run(SEQUENCE)
    assert handler.settings is not None
    return handler.settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
