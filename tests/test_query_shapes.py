"""Every repository query reads about what it returns, not the collection (counted, not timed).

SecantusDB decodes every document of a collection for a query shape no index serves, and `explain`
does not say so. These tests run the repositories against a server that counts the documents its
storage layer decodes (tests/decode_counting_server.py), on collections of 20,000+ documents, and fail
when a query's count approaches the collection's size: a filter written in the wrong key order, a
`$ne`/`$or`, an unbounded "newest N" or an index that went missing all show up here.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from core.config import PROJECT_ROOT, load_settings
from core.domain import (
    AssetKind,
    ExportState,
    ExportType,
    Frame,
    FrameRange,
    ImportState,
    Permission,
    RenditionState,
)
from core.fixtures.scale import ScaleSpec, ScaleWorld, build_scale_clinic
from core.infra import Infrastructure, build_infrastructure
from core.launcher import _wait_for, free_port
from core.migrations import prepare_database

SIZE = 20_000
pytestmark = pytest.mark.slow


@dataclass
class Counted:
    infra: Infrastructure
    world: ScaleWorld
    port: int

    def decoded(self) -> int:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            return int(conn.recv(64))

    def count(self, operation: Callable[[], object]) -> int:
        before = self.decoded()
        operation()
        return self.decoded() - before


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counted]:
    root = tmp_path_factory.mktemp("shapes")
    counter_port, db_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, str(PROJECT_ROOT / "tests" / "decode_counting_server.py"), str(counter_port), "--",
         "--host", "127.0.0.1", "--port", str(db_port), "--storage-path", str(root / "db"), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"mongodb://127.0.0.1:{db_port}/?directConnection=true"

    def ready() -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        try:
            with MongoClient(uri, serverSelectionTimeoutMS=300) as client:
                client.admin.command("ping")
            return True
        except PyMongoError:
            return False

    try:
        _wait_for(ready, "the decode-counting database", server, 60)
        settings = load_settings({"MONGODB_URI": uri, "MONGODB_DB": f"shapes_{uuid.uuid4().hex[:8]}",
                                  "REDIS_URL": "redis://127.0.0.1:1/0", "DATA_DIR": str(root / "data"),
                                  "STREAMLIT_SECRETS_PATH": str(root / "none.toml")})
        infra = build_infrastructure(settings)
        prepare_database(infra)
        spec = ScaleSpec(SIZE, patients_=SIZE, exports_=SIZE, audit_events_=SIZE, imports_=SIZE, decks_=SIZE // 4,
                         photos_per_patient=1)
        world = build_scale_clinic(infra, spec)
        yield Counted(infra, world, counter_port)
        infra.db.client.close()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_the_collections_are_large_enough_to_tell(counted: Counted) -> None:
    db = counted.infra.db
    for name in ("patients", "treatments", "simulations", "simulation_exports", "imaging_assets", "audit_events",
                 "imports"):
        assert db[name].estimated_document_count() >= SIZE, name
    # The counter sees a whole-collection read for what it is.
    assert counted.count(lambda: list(db.patients.find({"chartNumber": {"$ne": "x"}}))) >= SIZE


def _sample(counted: Counted) -> dict[str, str]:
    infra, world = counted.infra, counted.world
    sim = infra.simulations.get(world.clinic_id, world.simulation_ids[len(world.simulation_ids) // 2])
    export = infra.exports.get(world.clinic_id, world.export_ids[0])
    return {"sim": sim.id, "patient": sim.patientId, "export": export.id, "asset": world.asset_ids[0],
            "user": world.users["coordinator"], "doctor": world.users["doctor"]}


#: (name, operation, most documents it may decode). Budgets leave room for the server's own reads of
#: index specifications (up to ~80 per query on a collection with many indexes) and for the windows of
#: a page; a whole-collection read is 20,000+.
def _operations(counted: Counted) -> list[tuple[str, Callable[[], object], int]]:
    infra, world = counted.infra, counted.world
    clinic = world.clinic_id
    s = _sample(counted)
    page2 = infra.exports.list_recent(clinic, limit=50).cursor
    patients_page2 = infra.patients.page(clinic, limit=50).cursor
    audit_page2 = infra.audit.page(clinic, limit=200).cursor
    sim = infra.simulations.get(clinic, s["sim"])
    now = datetime.now(UTC)
    token, token_record = infra.api_tokens.create(clinic, user_id=s["user"], name="shape", created_by=s["user"],
                                                  permissions=frozenset({Permission.IMAGING_VIEW}),
                                                  lifetime=timedelta(days=1))
    hook = infra.webhooks.create(clinic, name="shape", url="https://example.com/hook", events=("export.done",))
    return [
        # simulations
        ("simulations.get", lambda: infra.simulations.get(clinic, s["sim"]), 150),
        ("simulations.summaries", lambda: infra.simulations.summaries(clinic, world.simulation_ids[:20]), 150),
        ("simulations.list_for_patient", lambda: infra.simulations.list_for_patient(clinic, s["patient"]), 300),
        ("simulations.list_for_patient approved", lambda: infra.simulations.list_for_patient(
            clinic, s["patient"], approved_only=True, include_archived=True), 300),
        ("simulations.series_versions", lambda: infra.simulations.series_versions(clinic, s["sim"]), 200),
        ("simulations.awaiting_approval", lambda: infra.simulations.awaiting_approval(clinic, limit=50), 1200),
        ("simulations.awaiting_approval again", lambda: infra.simulations.awaiting_approval(clinic, limit=50), 600),
        ("simulations.pending_renditions", lambda: infra.simulations.pending_renditions(clinic), 150),
        ("simulations.find_by_import", lambda: infra.simulations.find_by_import(clinic, "none"), 150),
        ("simulations.update_fields", lambda: infra.simulations.update_fields(
            clinic, s["sim"], expected_revision=infra.simulations.get(clinic, s["sim"]).revision, name="Renamed"), 400),
        ("simulations.set_renditions", lambda: infra.simulations.set_renditions(
            clinic, s["sim"], state=RenditionState.READY), 300),
        ("simulations.insert_version", lambda: infra.simulations.insert_version(
            clinic, patient_id=sim.patientId, treatment_id=sim.treatmentId, simulation_type=sim.simulationType,
            name="Next", frames=[Frame(0, 0, "front", world.asset_ids[0], 10, 10)], metadata={},
            created_by=s["user"]), 300),
        # exports
        ("exports.get", lambda: infra.exports.get(clinic, s["export"]), 150),
        ("exports.find_by_request_key", lambda: infra.exports.find_by_request_key(clinic, f"k{s['export']}"), 150),
        ("exports.list_recent", lambda: infra.exports.list_recent(clinic, limit=50), 500),
        ("exports.list_recent page 2", lambda: infra.exports.list_recent(clinic, limit=50, cursor=page2), 500),
        ("exports.list_recent mine", lambda: infra.exports.list_recent(clinic, limit=4, created_by=s["doctor"]), 400),
        ("exports.list_recent approved", lambda: infra.exports.list_recent(clinic, limit=50, approved_only=True),
         700),
        ("exports.list_for_simulation", lambda: infra.exports.list_for_simulation(clinic, s["sim"]), 200),
        ("exports.list_by_ids", lambda: infra.exports.list_by_ids(clinic, world.export_ids[:20]), 150),
        ("exports.in_states", lambda: infra.exports.in_states(clinic, (ExportState.PENDING, ExportState.RUNNING)),
         100),
        ("exports.transition", lambda: infra.exports.transition(
            clinic, s["export"], from_states=(ExportState.RUNNING,), to=ExportState.QUEUED, lease_free_only=True),
         300),
        ("exports.claim", lambda: infra.exports.claim(clinic, s["export"], from_states=(ExportState.QUEUED,),
                                                      token="t" * 32, lease_seconds=30), 300),  # 2 guards
        ("exports.report_progress", lambda: infra.exports.report_progress(clinic, s["export"], 5, "x", 30,
                                                                          token="t" * 32), 150),
        ("exports.renew_lease", lambda: infra.exports.renew_lease(clinic, s["export"], token="t" * 32,
                                                                  lease_seconds=30), 150),
        ("exports.request_cancel", lambda: infra.exports.request_cancel(clinic, s["export"]), 150),
        ("exports.create", lambda: infra.exports.create(
            clinic, simulation_id=s["sim"], export_type=ExportType.GIF, settings={}, frame_range=FrameRange(0, 0),
            created_by=s["user"], request_key=f"new-{uuid.uuid4().hex}"), 150),
        # assets
        ("assets.get", lambda: infra.assets.get(clinic, s["asset"]), 150),
        ("assets.get_many", lambda: infra.assets.get_many(clinic, world.asset_ids[:20]), 150),
        ("assets.list_for_patient", lambda: infra.assets.list_for_patient(clinic, s["patient"], limit=24), 400),
        ("assets.list_for_patient photos", lambda: infra.assets.list_for_patient(
            clinic, s["patient"], kinds=(AssetKind.PHOTO, AssetKind.SCAN)), 300),
        ("assets.sha256_in_use", lambda: infra.assets.sha256_in_use("0" * 64), 150),
        # patients, treatments, users
        ("patients.get", lambda: infra.patients.get(clinic, s["patient"]), 150),
        ("patients.get_many", lambda: infra.patients.get_many(clinic, world.patient_ids[:50]), 120),
        ("patients.page", lambda: infra.patients.page(clinic, limit=50), 600),
        ("patients.page 2", lambda: infra.patients.page(clinic, limit=50, cursor=patients_page2), 600),
        ("patients.search last", lambda: infra.patients.search(clinic, "Okafor"), 600),
        ("patients.search letter", lambda: infra.patients.search(clinic, "s"), 900),
        ("patients.search comma", lambda: infra.patients.search(clinic, "Smith, J"), 600),
        ("patients.search two words", lambda: infra.patients.search(clinic, "Maya Okafor"), 900),
        ("patients.search chart", lambda: infra.patients.search(clinic, "SG-000123"), 300),
        ("treatments.list_for_patient", lambda: infra.treatments.list_for_patient(clinic, s["patient"]), 150),
        ("users.get", lambda: infra.users.get(clinic, s["user"]), 150),
        ("users.get_for_session", lambda: infra.users.get_for_session(s["user"]), 150),
        ("clinics.get", lambda: infra.clinics.get(clinic), 150),
        # audit
        ("audit.append", lambda: infra.audit.append(clinic, action="signin", user_id=s["user"]), 150),
        ("audit.page", lambda: infra.audit.page(clinic, limit=200), 500),
        ("audit.page 2", lambda: infra.audit.page(clinic, limit=200, cursor=audit_page2), 500),
        ("audit.page action", lambda: infra.audit.page(clinic, action="approval.granted", limit=200), 900),
        ("audit.page user", lambda: infra.audit.page(clinic, user_id=s["doctor"], limit=200), 1500),
        ("audit.page patient", lambda: infra.audit.page(clinic, patient_id=s["patient"], limit=200), 300),
        ("audit.page dates", lambda: infra.audit.page(clinic, since=now - timedelta(days=60),
                                                    until=now - timedelta(days=30), limit=200), 900),
        ("audit.for_simulation", lambda: infra.audit.for_simulation(clinic, s["sim"], action="approval.granted"),
         100),
        ("audit.for_simulations", lambda: infra.audit.for_simulations(
            clinic, world.simulation_ids[:10], actions=("approval.granted", "simulation.import")), 200),
        # imports and decks
        ("imports.list unmatched", lambda: infra.imports.list(clinic, states=(ImportState.UNMATCHED,)), 500),
        ("imports.list patient", lambda: infra.imports.list(clinic, patient_id=s["patient"]), 300),
        ("imports.list recent", lambda: infra.imports.list(clinic), 700),
        ("imports.sha256_in_use", lambda: infra.imports.sha256_in_use("0" * 64), 150),
        ("decks.list_for_patient", lambda: infra.decks.list_for_patient(clinic, s["patient"]), 200),
        # the HTTP API: tokens, idempotency keys, batched call records, webhooks
        ("api_tokens.verify", lambda: infra.api_tokens.verify(token), 150),
        ("api_tokens.list", lambda: infra.api_tokens.list(clinic), 150),
        ("api_tokens.touch", lambda: infra.api_tokens.touch(token_record.id, now), 150),
        ("idempotency.claim", lambda: infra.idempotency.claim(clinic, token_record.id, "k", "h"), 150),
        ("idempotency.purge_expired", lambda: infra.idempotency.purge_expired(clinic), 150),
        # 20 links: ~20 decodes per inserted event (unique-index checks; measured 393), never the trail
        ("audit.append_many", lambda: infra.audit.append_many(clinic, [{"action": "api.call"}] * 20), 500),
        ("webhooks.list", lambda: infra.webhooks.list(clinic), 150),
        ("webhooks.pending", lambda: infra.webhooks.pending(clinic, older_than=now, since=now - timedelta(days=2)),
         150),
        ("webhooks.recent_deliveries", lambda: infra.webhooks.recent_deliveries(clinic, hook.id), 150),
    ]


def test_every_repository_query_reads_about_what_it_shows(counted: Counted) -> None:
    readings = {name: (counted.count(operation), budget) for name, operation, budget in _operations(counted)}
    print("\n".join(f"{n:45s} {r:7d} / {b}" for n, (r, b) in readings.items()))
    over = {name: reading for name, reading in readings.items() if reading[0] > reading[1]}
    assert not over, f"decoded more than their budget (of {SIZE:,}+ documents): {over}"


def test_the_first_page_of_a_list_is_found_in_a_few_windows(counted: Counted) -> None:
    infra, clinic = counted.infra, counted.world.clinic_id
    page = infra.exports.list_recent(clinic, limit=50)
    assert len(page) == 50 and page.cursor
    times = [e.createdAt for e in page]
    assert times == sorted(times, reverse=True)
    second = infra.exports.list_recent(clinic, limit=50, cursor=page.cursor)
    assert len(second) == 50 and second[0].createdAt <= times[-1]
    assert not {e.id for e in page} & {e.id for e in second}


def test_paging_through_a_patient_list_visits_everyone_once_in_name_order(counted: Counted) -> None:
    infra, clinic = counted.infra, counted.world.clinic_id
    seen: list[tuple[str, str]] = []
    cursor = None
    for _ in range(8):
        page = infra.patients.page(clinic, limit=200, cursor=cursor)
        seen.extend((p.lastName.lower(), p.id) for p in page)
        cursor = page.cursor
    assert len(seen) == 1600 and len({pid for _, pid in seen}) == 1600
    names = [name for name, _ in seen]
    assert names == sorted(names)


def test_a_whole_trail_verifies_from_its_index_and_resumes_from_its_checkpoint(counted: Counted) -> None:
    infra, clinic = counted.infra, counted.world.clinic_id
    full = infra.audit.verify(clinic)
    assert full.intact, full.problems
    infra.audit.append(clinic, action="signin")
    reads = counted.count(lambda: infra.audit.verify(clinic, from_checkpoint=True))
    resumed = infra.audit.verify(clinic, from_checkpoint=True)
    assert resumed.intact and resumed.checked <= 1
    assert reads < 200


def test_start_up_on_a_large_database_builds_no_index_twice(counted: Counted) -> None:
    from core.db import ensure_indexes

    reads = counted.count(lambda: ensure_indexes(counted.infra.db))
    assert reads < 500


def test_a_newest_first_list_starts_where_its_last_page_found_rows(counted: Counted) -> None:
    """A burst of 3,000 exports three hours ago, nothing since: the first look walks the quiet stretch
    and reads the burst's window; later looks start at the rows the last page found."""
    from bson import ObjectId

    from core.repositories.base import WALK_HINTS, utcnow

    infra, world = counted.infra, counted.world
    clinic = infra.create_clinic(name="Burst", slug=f"burst-{uuid.uuid4().hex[:6]}").id
    template = infra.exports.create(clinic, simulation_id=world.simulation_ids[0], export_type=ExportType.GIF,
                                    settings={}, frame_range=FrameRange(0, 0), created_by=world.users["coordinator"],
                                    request_key="burst-template")
    doc = infra.db.simulation_exports.find_one({"_id": ObjectId(template.id), "clinicId": ObjectId(clinic)})
    infra.db.simulation_exports.delete_one({"_id": ObjectId(template.id), "clinicId": ObjectId(clinic)})
    burst = utcnow() - timedelta(hours=3)
    infra.db.simulation_exports.insert_many(
        [{**doc, "_id": ObjectId(), "requestKey": f"burst-{n}", "createdAt": burst - timedelta(seconds=n)}
         for n in range(3000)])
    WALK_HINTS.clear()
    cold = counted.count(lambda: infra.exports.list_recent(clinic, limit=50))
    warm = [counted.count(lambda: infra.exports.list_recent(clinic, limit=50)) for _ in range(3)]
    assert cold >= 3000  # the control: without a hint the first window holds the whole burst
    assert max(warm) <= 3 * 51, warm
    page = infra.exports.list_recent(clinic, limit=50)
    assert [e.createdAt for e in page] == [burst - timedelta(seconds=n) for n in range(50)]
