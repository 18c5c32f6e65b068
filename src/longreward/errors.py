"""Errors shared across the package. Each message tells the user what to do."""

from __future__ import annotations


class LongRewardError(Exception):
    """Base class for errors raised on purpose by longreward."""


class MissingDependencyError(LongRewardError, ImportError):
    """An optional extra is needed for the feature that was asked for."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Fix: pip install 'longreward[{extra}]'"
        )
        self.extra = extra


class RecordError(LongRewardError, ValueError):
    """One input record is unusable. Names the record and the field; the run goes on."""

    def __init__(self, record: str, field: str | None, message: str, *,
                 record_id: str | None = None) -> None:
        where = f"record {record}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")
        self.record = record
        self.field = field
        self.reason = message
        #: the id the record carries, where it has a usable one (e.g. a repeated prompt id)
        self.record_id = record_id


class ConfigError(LongRewardError, ValueError):
    """A config file or option set is unusable (unreadable YAML, a bad value). Names the file
    (and line, where the parser gives one)."""


class InputFileError(LongRewardError):
    """An input file as a whole cannot be used (missing, unreadable). Records inside a
    readable file are reported one by one as ``RecordError`` instead."""


class RunLockedError(LongRewardError):
    """Another process holds the run directory; two writers would duplicate rows and calls."""


class StaleRunError(LongRewardError, ValueError):
    """The run store holds a stage's results made with other settings than this run's."""


class UsageError(LongRewardError, ValueError):
    """Options that cannot work together or are missing (e.g. a judge without a model)."""
