"""Run inside the napari venv (tests/.napari-venv), not under pytest: what napari-ome-zarr
reads, and what napari's canvas shows. Prints JSON on standard output.

Usage: python _napari_probe.py read PATH...  |  python _napari_probe.py screenshot PATH PNG
"""

from __future__ import annotations

import json
import sys

import numpy as np


def read(paths: list[str]) -> list[dict[str, object]]:
    from napari_ome_zarr._reader import napari_get_reader

    results: list[dict[str, object]] = []
    for path in paths:
        try:
            reader = napari_get_reader(path)
            if reader is None:
                results.append({"path": path, "error": "napari-ome-zarr: not an OME-Zarr"})
                continue
            layers = []
            for data, kwargs, kind in reader(path):
                full = np.asarray(data[0] if isinstance(data, list) else data)
                planes = full.reshape(-1, *full.shape[-2:])
                layers.append(
                    {
                        "kind": kind,
                        "shape": list(full.shape),
                        "name": kwargs.get("name"),
                        "scale": kwargs.get("scale"),
                        "channel_axis": kwargs.get("channel_axis"),
                        "contrast_limits": kwargs.get("contrast_limits"),
                        "plane_min": planes.min(axis=(1, 2)).tolist(),
                        "plane_max": planes.max(axis=(1, 2)).tolist(),
                    }
                )
            results.append({"path": path, "layers": layers})
        except Exception as err:  # report per path, go on with the others
            results.append({"path": path, "error": f"{type(err).__name__}: {err}"})
    return results


def _brightness(image: np.ndarray) -> dict[str, float]:
    value = np.asarray(image)[..., :3].max(axis=-1).astype(float)
    return {"mean": float(value.mean()), "bright_fraction": float((value > 40).mean())}


def screenshot(path: str, png: str) -> dict[str, object]:
    """The canvas as napari first shows ``path``, then after napari's own auto-contrast."""
    import napari

    viewer = napari.Viewer(show=True)  # an unshown canvas renders black under Xvfb
    viewer.open(path, plugin="napari-ome-zarr")
    shown = viewer.screenshot(path=png, canvas_only=True, flash=False)
    names = [layer.name for layer in viewer.layers]
    limits = [list(layer.contrast_limits) for layer in viewer.layers]
    for layer in viewer.layers:
        layer.reset_contrast_limits()
    auto = viewer.screenshot(canvas_only=True, flash=False)
    viewer.close()
    return {
        "layers": names,
        "contrast_limits": limits,
        "shape": list(np.asarray(shown).shape),
        "default": _brightness(shown),
        "autocontrast": _brightness(auto),
    }


if __name__ == "__main__":
    if sys.argv[1] == "read":
        print(json.dumps(read(sys.argv[2:])))
    else:
        print(json.dumps(screenshot(sys.argv[2], sys.argv[3])))
