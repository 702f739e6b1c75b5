"""Every error mmalign raises on purpose derives from :class:`MmalignError`.

The CLI prints an ``MmalignError`` as one clear line (it names the bad value, the item or file,
and what would be valid) and exits non-zero; any other exception is a bug and shows its traceback.
Errors about a value the caller chose also derive from ``ValueError`` (and registry look-ups from
``LookupError``), so library callers that catch the builtin keep working.
"""

from __future__ import annotations


class MmalignError(Exception):
    """Base class: a precondition a user can fix, stated with what would be valid."""


class ConfigError(MmalignError, ValueError):
    """An option, argument or configuration value is invalid."""


class DataError(MmalignError, ValueError):
    """The data cannot support what was asked (too few paired items, no features, empty split)."""


class RegistryError(ConfigError, LookupError):
    """An encoder or preset name is not registered, or a registration clashes."""


class WeightsError(MmalignError):
    """Pretrained weights cannot be found or loaded (missing package, file or checkpoint)."""


class BundleError(MmalignError, ValueError):
    """A bundle is missing, damaged, of another schema version, or does not match the encoders in use."""


class StoreError(MmalignError):
    """A store precondition failed, or the server kept failing after retries."""


class SourceError(MmalignError):
    """The catalog itself cannot be read (missing file, unknown format, bad column mapping)."""


class ItemError(MmalignError):
    """A problem with one item; the run records it in the dead-letter file and goes on."""

    stage = "load"

    def __init__(self, item_id: str | None, reason: str, *, path: str | None = None, modality: str | None = None):
        self.item_id = item_id
        self.reason = reason
        self.path = path
        self.modality = modality
        where = f" ({modality}: {path})" if path else (f" ({modality})" if modality else "")
        super().__init__(f"item {item_id!r}{where}: {reason}")


class MediaError(ItemError):
    """A media file is missing, unreadable, empty, outside the media root or of an unsupported type."""


class BatchError(MmalignError):
    """Every item of a batch failed the same way (wrong checkpoint, out of memory): the run stops
    instead of dead-lettering the whole catalog."""
