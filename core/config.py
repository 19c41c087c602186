"""One frozen `Settings` per process, read from the environment and `.streamlit/secrets.toml`.

Environment variables win over `secrets.toml`; nothing is read at import time. Every default is
documented here (and in the README), the way rq's `defaults.py` documents its own.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Mongo database used when MONGODB_DB is unset.
DEFAULT_DB = "treatment_studio"
#: Where files (asset store, embedded servers' data) live when DATA_DIR is unset.
DEFAULT_DATA_DIR = PROJECT_ROOT / "var"
#: Queues a worker listens on, highest priority first. "background" (first-start demo rendering) comes
#: last, so a user's export or import never waits behind the demo.
DEFAULT_QUEUES = ("interactive", "renditions", "imports", "exports", "background")
#: What the launcher's second and further workers serve: everything but "background", so one worker is
#: always free for users' work (and the maintenance job) while the demo renders.
FOREGROUND_QUEUES = DEFAULT_QUEUES[:-1]
ASSET_STORES = ("files", "gridfs")


@dataclass(frozen=True)
class Settings:
    """Process-wide configuration. Build it with `load_settings()`; never mutate it."""

    mongodb_uri: str | None = None
    mongodb_db: str = DEFAULT_DB
    redis_url: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    asset_store: str = "files"
    worker_queues: tuple[str, ...] = DEFAULT_QUEUES
    #: Seconds between a worker's heartbeats / job monitoring; short so dead workers are found fast.
    worker_monitoring_interval: int = 10
    #: Seconds between a worker's registry clean-ups (orphaned jobs of dead workers are failed/retried).
    worker_maintenance_interval: int = 30
    #: A dead worker's key expires after this many seconds; its started jobs are then cleaned up.
    worker_ttl: int = 35
    #: Seconds between maintenance runs: watch-folder syncs, re-queueing exports whose worker died or
    #: that were recorded while Redis was down. With the 15 s render lease, a dead render is queued
    #: again within about 30 s.
    maintenance_seconds: int = 15
    #: Seconds a render's lease lasts; a heartbeat renews it every third of this while the worker lives
    #: (however rarely the renderer reports progress), so it only runs out when the worker died.
    export_lease_seconds: int = 15
    #: Seconds a stored file is kept after its last write even when no record refers to it: a writer
    #: stores the bytes before it records them (a render or import job, up to an hour). Clean-up after
    #: an import and `cli gc` delete unreferenced files only once they are older than this.
    blob_grace_seconds: int = 3600
    #: Hours between automatic clean-ups of stored files no record refers to (the `cli gc` rule, on the
    #: workers' background queue, once per period however many workers run); 0 turns them off.
    gc_hours: float = 24.0
    #: Minutes without interaction after which a session is signed out and patient data hidden.
    idle_timeout_minutes: int = 15
    #: Development sign-in (pick a demo user). Only honoured when no OIDC `[auth]` is configured.
    dev_signin: bool = False
    #: True when `.streamlit/secrets.toml` has an `[auth]` section (OpenID Connect via st.login).
    oidc_configured: bool = False
    #: Keys of the audit chain's HMAC, `id:hex,...` (first one signs). Unset: a key file generated under
    #: DATA_DIR/keys on first use. Set it (the same value everywhere) when processes run on several hosts.
    audit_keys: str | None = field(default=None, repr=False)
    #: Keys that sign download links (`LINK_KEYS`, same format; unset: DATA_DIR/keys/links.keys).
    link_keys: str | None = field(default=None, repr=False)
    #: Hours a browser session lasts at most, however active (the idle timeout ends it sooner).
    session_hours: int = 12
    #: Requests one API token may make per minute (`API_RATE_PER_MINUTE`); more are answered 429.
    api_rate_per_minute: int = 600
    #: Largest multipart import the API accepts, in megabytes (`API_MAX_UPLOAD_MB`).
    api_max_upload_mb: int = 200
    #: Tests only: let webhooks go to http://127.0.0.1 (`WEBHOOKS_ALLOW_LOOPBACK_HTTP=1`); otherwise HTTPS only.
    webhooks_allow_loopback_http: bool = False
    secrets_path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.asset_store not in ASSET_STORES:
            raise ConfigurationError(
                f"ASSET_STORE is {self.asset_store!r}; choose one of {', '.join(ASSET_STORES)}."
            )
        if not self.mongodb_db or any(c in self.mongodb_db for c in r'/\. "$'):
            raise ConfigurationError(f"MONGODB_DB {self.mongodb_db!r} is not a valid database name.")
        if not self.worker_queues:
            raise ConfigurationError("WORKER_QUEUES is empty; name at least one queue.")

    @property
    def dev_signin_allowed(self) -> bool:
        """The picker of demo users is offered only without OIDC and when explicitly enabled."""
        return self.dev_signin and not self.oidc_configured


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _read_secrets(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc


def load_settings(
    environ: Mapping[str, str] | None = None, secrets_path: Path | None = None
) -> Settings:
    """Read settings once: environment first, then top-level keys of `secrets.toml`."""
    env = os.environ if environ is None else environ
    path = secrets_path or Path(
        env.get("STREAMLIT_SECRETS_PATH", PROJECT_ROOT / ".streamlit" / "secrets.toml")
    )
    secrets = _read_secrets(path)

    def get(name: str, default: str | None = None) -> str | None:
        value = env.get(name)
        if value in (None, ""):
            value = secrets.get(name)
        return default if value in (None, "") else str(value)

    queues = get("WORKER_QUEUES")
    return Settings(
        mongodb_uri=get("MONGODB_URI"),
        mongodb_db=get("MONGODB_DB", DEFAULT_DB) or DEFAULT_DB,
        redis_url=get("REDIS_URL"),
        data_dir=Path(get("DATA_DIR") or DEFAULT_DATA_DIR).resolve(),
        asset_store=(get("ASSET_STORE", "files") or "files").lower(),
        worker_queues=tuple(q.strip() for q in queues.split(",") if q.strip())
        if queues
        else DEFAULT_QUEUES,
        worker_monitoring_interval=int(get("WORKER_MONITORING_INTERVAL", "10") or 10),
        worker_maintenance_interval=int(get("WORKER_MAINTENANCE_INTERVAL", "30") or 30),
        worker_ttl=int(get("WORKER_TTL", "35") or 35),
        maintenance_seconds=int(get("MAINTENANCE_SECONDS", "15") or 15),
        export_lease_seconds=int(get("EXPORT_LEASE_SECONDS", "15") or 15),
        blob_grace_seconds=int(get("BLOB_GRACE_SECONDS", "3600") or 3600),
        gc_hours=float(get("GC_HOURS", "24") or 0),
        idle_timeout_minutes=int(get("IDLE_TIMEOUT_MINUTES", "15") or 15),
        dev_signin=_truthy(get("DEV_SIGNIN")),
        oidc_configured=isinstance(secrets.get("auth"), dict) and bool(secrets["auth"]),
        audit_keys=get("AUDIT_KEYS"),
        link_keys=get("LINK_KEYS"),
        session_hours=int(get("SESSION_HOURS", "12") or 12),
        api_rate_per_minute=int(get("API_RATE_PER_MINUTE", "600") or 600),
        api_max_upload_mb=int(get("API_MAX_UPLOAD_MB", "200") or 200),
        webhooks_allow_loopback_http=_truthy(get("WEBHOOKS_ALLOW_LOOPBACK_HTTP")),
        secrets_path=path,
    )
