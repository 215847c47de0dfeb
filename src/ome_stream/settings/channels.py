"""Channels: the coords of a ``type="channel"`` dimension."""

from __future__ import annotations

from typing import Annotated, Any, TypeAlias

from pydantic import AfterValidator, Field, PositiveInt, model_validator
from pydantic_extra_types.color import Color  # noqa: TC002 - pydantic needs it

from ome_stream.settings._base import NonEmptyStr, SettingsModel

__all__ = ["Channel", "ChannelList"]


class Channel(SettingsModel):
    """One channel of the acquisition: its name and what is known about its light.

    Give these (or plain names, which become ``Channel(name=...)``) as the ``coords`` of a
    ``type="channel"`` dimension. The name and colour go to OME-XML's ``Channel`` and to
    OME-Zarr's ``omero`` channels.

    Examples
    --------
    >>> ch = Channel(name="GFP", color="lime", emission_wavelength_nm=510)
    >>> ch.color_hex
    '00FF00'

    """

    name: NonEmptyStr = Field(description="Channel name, as shown to the user.")
    excitation_wavelength_nm: PositiveInt | None = Field(
        default=None, description="Excitation wavelength in nanometers."
    )
    emission_wavelength_nm: PositiveInt | None = Field(
        default=None, description="Emission wavelength in nanometers."
    )
    fluorophore: str | None = Field(
        default=None, description="Fluorophore name (FPbase names are a good choice)."
    )
    color: Color | None = Field(
        default=None,
        description="Display colour: a CSS name ('magenta'), hex ('#FF00FF', 'f0f') or an "
        "RGB(A) tuple of 0-255 values.",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def color_hex(self) -> str | None:
        """The colour as 6 upper-case hex digits ``RRGGBB`` (alpha dropped), or None."""
        if self.color is None:
            return None
        red, green, blue = self.color.as_rgb_tuple(alpha=False)[:3]
        return f"{red:02X}{green:02X}{blue:02X}"


def _unique_channel_names(channels: list[Channel]) -> list[Channel]:
    names = [channel.name for channel in channels]
    if len(set(names)) != len(names):
        duplicated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"Channel names must be unique. Duplicated: {duplicated}")
    return channels


ChannelList: TypeAlias = Annotated[list[Channel], AfterValidator(_unique_channel_names)]
"""Channels with distinct names."""
