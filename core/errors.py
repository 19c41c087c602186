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


class StorageFullError(ServiceUnavailableError):
    """The server's disk (or its quota) is full: nothing was saved; free space, then try again."""

    def __init__(self, message: str = "The server's disk is full, so the file could not be saved (nothing was "
                                      "kept). Ask your administrator to free space, then try again.") -> None:
        super().__init__(message)


def is_disk_full(error: BaseException) -> bool:
    """Whether an OS error means "no space left" (a full disk or an exhausted quota)."""
    import errno

    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def service_problem(error: BaseException) -> StudioError | None:
    """What to tell a user when a backing service failed under them (None: not such a failure).

    The database or Redis being restarted by the launcher, or a full disk, should read as a short
    message on the page, not as a traceback."""
    from pymongo.errors import ConnectionFailure
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(error, StudioError):
        return error if isinstance(error, ServiceUnavailableError) else None
    if isinstance(error, ConnectionFailure):
        return ServiceUnavailableError("The database is restarting or unreachable. Nothing you saved is lost; "
                                       "try again in a minute.")
    if isinstance(error, RedisConnectionError | RedisTimeoutError):
        return ServiceUnavailableError("The job queue is restarting or unreachable. Nothing you saved is lost; "
                                       "try again in a minute.")
    if is_disk_full(error):
        return StorageFullError()
    return None
