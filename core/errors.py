"""The one error hierarchy of `core`. Messages are shown to users: say what was wrong and what to do."""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error `core` raises on purpose; pages catch it and show `str(error)`."""


class ConfigurationError(StudioError):
    """Settings or the environment are wrong (bad env var, missing binary, unreachable server)."""


class NotFoundError(StudioError):
    """The record does not exist in the caller's clinic (records of other clinics are never found)."""


class PermissionDeniedError(StudioError):
    """The acting user lacks the permission for this operation."""


class ValidationError(StudioError):
    """Input was rejected; nothing was written."""


class ConflictError(StudioError):
    """A concurrent change or uniqueness rule prevented the write; reload and try again."""


class ServiceUnavailableError(StudioError):
    """A backing service (database, Redis) could not be reached."""
