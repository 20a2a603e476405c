"""Exceptions raised by lumos-ops.

Every error inherits from a built-in exception so that callers can catch the generic kind
(``ValueError``, ``FileNotFoundError``...) and from :class:`LumosError` so that the CLI can turn
any of them into a one-line message instead of a traceback. Errors of the input itself derive from
:class:`BadInputError` (retrying cannot help); storage and database errors may be transient.
"""

__all__ = [
    "LumosError",
    "BadInputError",
    "LumosValueError",
    "InputFileError",
    "HeaderError",
    "CatalogError",
    "ModelError",
    "StorageError",
    "DatabaseError",
    "NOT_RETRYABLE",
]


class LumosError(Exception):
    """Base class of every error raised on purpose by lumos-ops."""


class BadInputError(LumosError):
    """The input itself is wrong (a file, a header, the catalogue, a parameter): retrying the same
    input cannot succeed, so schedulers should fail at once instead of retrying."""


class LumosValueError(BadInputError, ValueError):
    """A parameter has an invalid value; the message names the parameter."""


class InputFileError(BadInputError, OSError):
    """An input file is missing, empty, truncated or unreadable; the message names the file."""


class HeaderError(BadInputError, KeyError):
    """A FITS header lacks a required keyword or has an invalid value.

    ``KeyError`` quotes its message in ``str()``; this class returns it verbatim.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CatalogError(BadInputError, ValueError):
    """The external catalogue is malformed; the message names the file, row and column."""


class ModelError(LumosError, ValueError):
    """A model checkpoint is missing, corrupt or incompatible with the requested configuration."""


class StorageError(LumosError, OSError):
    """Object storage failed (missing key, checksum mismatch, invalid key)."""


class DatabaseError(LumosError, RuntimeError):
    """The photometry database is unreachable or its schema is not at the expected version."""


NOT_RETRYABLE: tuple[type[Exception], ...] = (BadInputError, ModelError)
"""Errors that retrying the same task cannot fix: the input or the configuration itself is wrong
(:class:`BadInputError`: ``LumosValueError``, ``InputFileError``, ``HeaderError``, ``CatalogError``;
:class:`ModelError`: a missing, corrupt or mismatched checkpoint). Storage and database errors
(``StorageError``, ``DatabaseError``, the drivers' own) may be transient and keep a task's retries."""
