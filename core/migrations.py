"""One-time upgrades of an existing database, run at start-up after the indexes are in place.

Each migration is idempotent and recorded in `migrations`, so a large database pays for it once (the
launcher logs how long it took). A fresh database runs them over empty collections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from core.db import ensure_indexes
from core.infra import Infrastructure
from core.repositories.migrations import MigrationRepository

log = logging.getLogger(__name__)


def _patient_sort_keys(infra: Infrastructure) -> int:
    return infra.patients.backfill_sort_keys()


def _simulation_summaries(infra: Infrastructure) -> int:
    return infra.simulations.backfill_summaries()


def _audit_chain_heads(infra: Infrastructure) -> int:
    return sum(infra.audit.adopt_legacy_chain(clinic_id) for clinic_id in infra.clinics.list_ids())


#: In order; never rename one that has shipped.
MIGRATIONS: tuple[tuple[str, Callable[[Infrastructure], int]], ...] = (
    ("2026-12-patient-sort-keys", _patient_sort_keys),
    ("2026-12-simulation-summaries", _simulation_summaries),
    ("2026-12-audit-chain-heads", _audit_chain_heads),
)


def prepare_database(infra: Infrastructure) -> list[str]:
    """Create missing indexes, then run the migrations this database has not had. Returns their names."""
    ensure_indexes(infra.db)
    record = MigrationRepository(infra.db)
    done = record.done()
    ran = []
    for name, migration in MIGRATIONS:
        if name in done:
            continue
        started = time.monotonic()
        changed = migration(infra)
        record.record(name, changed=changed)
        log.info("migration %s: %d record(s) in %.1f s", name, changed, time.monotonic() - started)
        ran.append(name)
    return ran
