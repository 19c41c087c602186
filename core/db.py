"""MongoDB connection and index creation. Only repositories use the `Database` this returns."""

from __future__ import annotations

from bson.codec_options import CodecOptions
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import PyMongoError

from core.config import Settings
from core.errors import ConfigurationError, ServiceUnavailableError


def connect(settings: Settings, *, timeout_ms: int = 10_000) -> Database:
    """A database handle with tz-aware datetimes and journaled writes (durable across a crash)."""
    if not settings.mongodb_uri:
        raise ConfigurationError(
            "MONGODB_URI is not set. `make run` starts the embedded server and sets it; "
            "otherwise point it at your MongoDB, e.g. mongodb://db.example:27017."
        )
    client: MongoClient = MongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        journal=True,
        serverSelectionTimeoutMS=timeout_ms,
        appname="treatment-studio",
    )
    return client.get_database(
        settings.mongodb_db, codec_options=CodecOptions(tz_aware=True)
    )


def ping(db: Database) -> None:
    """Raise `ServiceUnavailableError` unless the database answers."""
    try:
        db.command("ping")
    except PyMongoError as exc:
        raise ServiceUnavailableError(
            "The database is not reachable; check MONGODB_URI and that the server is running."
        ) from exc


def ensure_indexes(db: Database) -> None:
    """Create every index the repositories rely on (idempotent; run at start-up)."""
    from core.repositories import ALL_REPOSITORIES

    for repository_class in ALL_REPOSITORIES:
        repository_class.ensure_indexes(db)
