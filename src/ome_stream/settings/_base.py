"""What every settings model shares: the pydantic configuration and the path-name rule."""

from __future__ import annotations

import re
from typing import Annotated, TypeAlias

from annotated_types import MinLen
from pydantic import BaseModel, ConfigDict

__all__ = ["NonEmptyStr", "SettingsModel", "check_path_name"]

NonEmptyStr: TypeAlias = Annotated[str, MinLen(1)]
"""A string of at least one character."""

# Characters that must never reach a file or object name: path separators, NUL and the
# other control characters, and the characters Windows forbids in names.
_UNSAFE_NAME = re.compile(r'[/\\\x00-\x1f\x7f<>:"|?*]')


class SettingsModel(BaseModel):
    """Base of the settings models: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(validate_default=True, validate_assignment=True, extra="forbid")


def check_path_name(value: str, what: str) -> str:
    """Return ``value`` if it can be one component of a path, else raise ValueError.

    Position names and plate row/column names become group or file names; a name such as
    ``".."`` or ``"a/b"`` would put data outside its place (or outside the dataset).
    """
    if not value or not value.strip():
        raise ValueError(f"{what} must not be empty or blank, got {value!r}")
    if value in {".", ".."} or _UNSAFE_NAME.search(value):
        raise ValueError(
            f"{what} {value!r} is not a safe name: it must not be '.' or '..' and must not "
            "contain '/', '\\', control characters or any of <>:\"|?*"
        )
    return value
