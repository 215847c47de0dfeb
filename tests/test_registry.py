"""The backend registry: what is installed, the default per format, and the ImportError
that names the extra to install — checked in a real interpreter where the package is
absent (an import hook blocks it), not by mocking our own functions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ome_stream import available_backends
from ome_stream.backends.registry import BACKENDS, backend_info, load_backend


def test_installed_backends_in_order_of_preference() -> None:
    assert available_backends("ome-zarr")[:2] == ["tensorstore", "zarr-python"]
    assert available_backends("ome-tiff") == ["tifffile"]
    assert set(available_backends()) <= set(BACKENDS)
    assert backend_info("tifffile").format == "ome-tiff"
    with pytest.raises(ValueError, match="unknown backend 'hdf5'; known backends"):
        backend_info("hdf5")
    assert load_backend("tensorstore").__name__ == "TensorStoreBackend"


BLOCKED = textwrap.dedent("""
    import sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "acquire_zarr":
                raise ModuleNotFoundError("No module named 'acquire_zarr'")
    sys.meta_path.insert(0, Block())
    import importlib.util
    importlib.util.find_spec = (lambda f: lambda name, *a: None
                                if name.split(".")[0] == "acquire_zarr" else f(name, *a)
                                )(importlib.util.find_spec)
    from ome_stream import AcquisitionSettings, available_backends, create_stream
    from ome_stream import dims_from_standard_axes
    assert "acquire-zarr" not in available_backends(), available_backends()
    settings = AcquisitionSettings(root_path=sys.argv[1], format="acquire-zarr",
        dtype="uint8", dimensions=dims_from_standard_axes({"t": 1, "y": 4, "x": 4}))
    try:
        create_stream(settings)
    except ImportError as err:
        print(err)
    else:
        print("no error")
""")


def test_missing_extra_names_the_pip_command(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(tmp_path / "x.ome.zarr")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "run pip install 'ome-stream[acquire-zarr]'" in result.stdout
    assert not (tmp_path / "x.ome.zarr").exists()  # nothing was touched


def test_registry_knows_every_backend_ome_writers_names() -> None:
    # zarrs-python and the scratch backend are registered whether or not their modules
    # are installed yet; availability is a separate question.
    zarrs = backend_info("zarrs-python")
    assert (zarrs.format, zarrs.module, zarrs.requires, zarrs.extra) == (
        "ome-zarr",
        "ome_stream.backends.zarrs_python",
        ("zarr", "zarrs"),
        "zarrs",
    )
    assert zarrs.compressions == backend_info("zarr-python").compressions
    scratch = backend_info("scratch")
    assert (scratch.format, scratch.requires, scratch.extra) == ("scratch", (), None)
    assert scratch.compressions == ("none",)
    assert scratch.supports_unbounded and scratch.supports_storage_order
    assert set(available_backends()) <= set(BACKENDS)
