"""Object keys of a night's exposures: the key template, key validation and key parsing.

The default template is the survey simulator's layout,
``exposures/{night}/exp{expnum:07d}_ccd{ccd:02d}.fits``; ``night`` is an ISO date ``YYYY-MM-DD``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import string

from lumos_ops.exceptions import LumosValueError, StorageError

__all__ = [
    "DEFAULT_KEY_TEMPLATE",
    "KeyTemplate",
    "ExposureKey",
    "validate_key",
    "validate_night",
]

DEFAULT_KEY_TEMPLATE: str = "exposures/{night}/exp{expnum:07d}_ccd{ccd:02d}.fits"
"""Where a night's reduced exposures live in object storage (one FITS per CCD)."""

_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-+=][A-Za-z0-9_.\-+=/]*$")
_FIELDS: dict[str, str] = {"night": r"\d{4}-\d{2}-\d{2}", "expnum": r"\d+", "ccd": r"\d+"}


def validate_key(key: str, *, what: str = "object key") -> str:
    """Return ``key`` when it is a safe relative object key, otherwise raise.

    A safe key is 1-1024 characters of ``A-Z a-z 0-9 _ . - + = /``, does not start with ``/``,
    and has no empty, ``.`` or ``..`` path segment, so it can never escape a local store root
    nor address an unexpected S3 object.

    Raises
    ------
    StorageError
        The key is unsafe; the message quotes it.
    """
    if not isinstance(key, str) or not 0 < len(key) <= 1024 or not _KEY_RE.match(key):
        raise StorageError(f"{what} {key!r} is invalid: use 1-1024 characters of A-Z a-z 0-9 _ . - + = / "
                           "and no leading '/'")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"{what} {key!r} is invalid: empty, '.' or '..' path segments are not allowed")
    return key


def validate_night(night: str | dt.date) -> str:
    """Normalise a night to ``YYYY-MM-DD``.

    Raises
    ------
    LumosValueError
        ``night`` is not an ISO calendar date.
    """
    if isinstance(night, dt.datetime):
        night = night.date()
    if isinstance(night, dt.date):
        return night.isoformat()
    try:
        return dt.date.fromisoformat(str(night).strip()).isoformat()
    except ValueError:
        raise LumosValueError(f"night={night!r} is not an ISO date; use YYYY-MM-DD, e.g. 2026-11-23") from None


@dataclasses.dataclass(frozen=True)
class ExposureKey:
    """The identifiers encoded in an exposure's object key."""

    key: str
    night: str
    expnum: int
    ccd: int


@dataclasses.dataclass(frozen=True)
class KeyTemplate:
    """A key template with the fields ``{night}``, ``{expnum}`` and ``{ccd}``.

    Parameters
    ----------
    template : str
        ``str.format`` template, e.g. :data:`DEFAULT_KEY_TEMPLATE`. Every field must appear once.
    """

    template: str = DEFAULT_KEY_TEMPLATE

    def __post_init__(self) -> None:
        names = [name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None]
        if sorted(names) != sorted(_FIELDS):
            raise LumosValueError(
                f"key_template={self.template!r} must use each of {{night}}, {{expnum}} and {{ccd}} exactly once "
                f"(found {names})"
            )
        validate_key(self.format("2000-01-01", 1, 1), what="key_template example")

    def format(self, night: str, expnum: int, ccd: int) -> str:
        """The key of one CCD image."""
        return self.template.format(night=validate_night(night), expnum=int(expnum), ccd=int(ccd))

    def prefix(self, night: str) -> str:
        """The longest key prefix shared by every exposure of ``night`` (for listing)."""
        night = validate_night(night)
        out = []
        for literal, name, spec, _ in string.Formatter().parse(self.template):
            out.append(literal)
            if name is None:
                continue
            if name != "night":
                break
            out.append(format(night, spec or ""))
        return "".join(out)

    def _regex(self) -> re.Pattern[str]:
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.template):
            parts.append(re.escape(literal))
            if name is not None:
                parts.append(f"(?P<{name}>{_FIELDS[name]})")
        return re.compile("^" + "".join(parts) + "$")

    def parse(self, key: str) -> ExposureKey | None:
        """Identifiers of ``key``, or None when the key does not follow the template."""
        match = self._regex().match(key)
        if match is None:
            return None
        try:
            night = validate_night(match["night"])
        except LumosValueError:
            return None
        return ExposureKey(key=key, night=night, expnum=int(match["expnum"]), ccd=int(match["ccd"]))
