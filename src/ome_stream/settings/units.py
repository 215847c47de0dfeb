"""Physical units: NGFF 0.5 names, the spellings accepted for them, and OME-XML symbols.

A :class:`~ome_stream.Dimension` stores its unit by NGFF name (``"micrometer"``); users may
also write the OME-XML symbol (``"µm"``) or a common abbreviation (``"um"``, ``"sec"``).
Spellings longer than two characters are matched case-insensitively; one- and
two-character symbols are case-sensitive (``"Mm"`` is a megameter, ``"mm"`` a millimeter).
"""

from __future__ import annotations

import warnings
from typing import Literal, TypeAlias

__all__ = [
    "ANY_LENGTH_TO_NGFF",
    "ANY_TIME_TO_NGFF",
    "NGFF_TO_OME_UNITS_LENGTH",
    "NGFF_TO_OME_UNITS_TIME",
    "cast_unit_to_ngff",
    "infer_dim_type_from_unit",
    "ngff_to_ome_unit",
]

UnitKind: TypeAlias = Literal["space", "time"]

#: NGFF 0.5 length unit → OME-XML ``UnitsLength`` symbol.
NGFF_TO_OME_UNITS_LENGTH: dict[str, str] = {
    "angstrom": "Å", "attometer": "am", "centimeter": "cm", "decimeter": "dm",
    "exameter": "Em", "femtometer": "fm", "foot": "ft", "gigameter": "Gm",
    "hectometer": "hm", "inch": "in", "kilometer": "km", "megameter": "Mm",
    "meter": "m", "micrometer": "µm", "mile": "mi", "millimeter": "mm",
    "nanometer": "nm", "parsec": "pc", "petameter": "Pm", "picometer": "pm",
    "terameter": "Tm", "yard": "yd", "yoctometer": "ym", "yottameter": "Ym",
    "zeptometer": "zm", "zettameter": "Zm",
}  # fmt: skip

#: NGFF 0.5 time unit → OME-XML ``UnitsTime`` symbol.
NGFF_TO_OME_UNITS_TIME: dict[str, str] = {
    "attosecond": "as", "centisecond": "cs", "day": "d", "decisecond": "ds",
    "exasecond": "Es", "femtosecond": "fs", "gigasecond": "Gs", "hectosecond": "hs",
    "hour": "h", "kilosecond": "ks", "megasecond": "Ms", "microsecond": "µs",
    "millisecond": "ms", "minute": "min", "nanosecond": "ns", "petasecond": "Ps",
    "picosecond": "ps", "second": "s", "terasecond": "Ts", "yoctosecond": "ys",
    "yottasecond": "Ys", "zeptosecond": "zs", "zettasecond": "Zs",
}  # fmt: skip


def _accepted(table: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """Every accepted spelling → NGFF name: the names, the symbols and ``extra``."""
    accepted = {symbol: name for name, symbol in table.items()}
    accepted.update({name: name for name in table})
    accepted.update(extra)
    return accepted


#: Accepted spelling of a length → its NGFF name ("GREEK SMALL LETTER MU" is accepted
#: as well as the micro sign, since keyboards produce either).
ANY_LENGTH_TO_NGFF: dict[str, str] = _accepted(
    NGFF_TO_OME_UNITS_LENGTH,
    {"um": "micrometer", "u": "micrometer", "μm": "micrometer", "micron": "micrometer",
     "A": "angstrom"},
)  # fmt: skip

#: Accepted spelling of a time → its NGFF name.
ANY_TIME_TO_NGFF: dict[str, str] = _accepted(
    NGFF_TO_OME_UNITS_TIME,
    {"us": "microsecond", "μs": "microsecond", "usec": "microsecond",
     "µsec": "microsecond", "msec": "millisecond", "sec": "second"},
)  # fmt: skip


def _key(unit: str) -> str:
    return unit.lower() if len(unit) > 2 else unit


def infer_dim_type_from_unit(unit: str | None) -> UnitKind | None:
    """``"space"`` or ``"time"`` when ``unit`` is a recognised length or time, else None.

    Examples
    --------
    >>> infer_dim_type_from_unit("ms"), infer_dim_type_from_unit("um")
    ('time', 'space')

    """
    if unit is None:
        return None
    key = _key(str(unit))
    if key in ANY_LENGTH_TO_NGFF:
        return "space"
    if key in ANY_TIME_TO_NGFF:
        return "time"
    return None


def cast_unit_to_ngff(unit: str, dim_type: str | None) -> str:
    """The NGFF name of ``unit`` on a dimension of type ``dim_type``.

    Space and time dimensions need a recognised length or time; other dimension types
    keep their unit as written.

    Raises
    ------
    ValueError
        ``dim_type`` is ``"space"`` or ``"time"`` and ``unit`` is not one of its units.

    Examples
    --------
    >>> cast_unit_to_ngff("µm", "space"), cast_unit_to_ngff("counts", "other")
    ('micrometer', 'counts')

    """
    key = _key(str(unit))
    if dim_type == "space":
        if key not in ANY_LENGTH_TO_NGFF:
            raise ValueError(
                f"Unrecognized unit of length: {unit!r}.\n  "
                f"Recognized units of length include: {list(ANY_LENGTH_TO_NGFF)}"
            )
        return ANY_LENGTH_TO_NGFF[key]
    if dim_type == "time":
        if key not in ANY_TIME_TO_NGFF:
            raise ValueError(
                f"Unrecognized unit of time: {unit!r}.\n  "
                f"Recognized units of time include: {list(ANY_TIME_TO_NGFF)}"
            )
        return ANY_TIME_TO_NGFF[key]
    return unit


def ngff_to_ome_unit(unit: str) -> str | None:
    """The OME-XML symbol of an NGFF unit name; None (with a warning) when it has none."""
    symbol = NGFF_TO_OME_UNITS_LENGTH.get(unit) or NGFF_TO_OME_UNITS_TIME.get(unit)
    if symbol is None:
        warnings.warn(
            f"Unit {unit!r} is not an NGFF length or time unit. Will not be written to "
            "OME-XML metadata.",
            UserWarning,
            stacklevel=2,
        )
    return symbol
