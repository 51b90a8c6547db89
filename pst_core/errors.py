"""User-facing errors: one line that names the file, row or field and says what to fix.

Everything the user can cause (a bad config, a broken data file, an unknown model, a corrupted
download) raises a subclass of :class:`PSTError`; the CLI prints its message and exits non-zero,
with no traceback. Anything else is a bug and keeps its traceback.
"""


class PSTError(Exception):
    """Base class of errors caused by input the user can fix."""


class ConfigError(PSTError):
    """An experiment config is unreadable or invalid."""


class DataError(PSTError):
    """A data file or dataset row is unreadable or invalid."""


class ModelError(PSTError):
    """A model source is unknown, missing or corrupted."""


class StoreError(PSTError):
    """A stored Parquet artifact is missing or does not match its declared schema."""


class HubUnavailable(PSTError):
    """A Hugging Face Hub model or dataset is neither cached nor served (offline, unknown,
    gated)."""
