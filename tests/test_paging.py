"""Keyset pages: every record exactly once, in order, whatever the timestamps; cursors and limits checked."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from bson import ObjectId
from pymongo import ASCENDING, IndexModel

from core.domain import ExportType, FrameRange, Role, SimulationType
from core.errors import ValidationError
from core.repositories.base import next_grid, sync_indexes
from tests.factories import make_clinic, new_frames


def _walk_all(fetch) -> list:
    items, cursor = [], None
    for _ in range(100):
        page = fetch(cursor)
        items.extend(page)
        cursor = page.cursor
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


def test_exports_page_through_everything_once_newest_first_with_ties(infra):
    world = make_clinic(infra)
    sim_id = str(ObjectId())
    rng = random.Random(4)
    base = datetime(2026, 6, 1, tzinfo=UTC)
    moments = [base - timedelta(minutes=rng.randrange(0, 60 * 24 * 400)) for _ in range(150)]
    moments += [base - timedelta(days=3)] * 40  # a burst written in the same millisecond
    for moment in moments:
        export = infra.exports.create(world.clinic.id, simulation_id=sim_id, export_type=ExportType.GIF, settings={},
                                      frame_range=FrameRange(0, 0), created_by=world.users[Role.COORDINATOR].id)
        infra.db.simulation_exports.update_one({"_id": ObjectId(export.id)}, {"$set": {"createdAt": moment}})
    seen = _walk_all(lambda c: infra.exports.list_recent(world.clinic.id, limit=17, cursor=c))
    assert len(seen) == 190 and len({e.id for e in seen}) == 190
    keys = [(e.createdAt, e.id) for e in seen]
    assert keys == sorted(keys, reverse=True)


def test_patients_page_by_name_and_search_reads_names_either_way(infra):
    world = make_clinic(infra)
    people = [("Maya", "Okafor"), ("Jo", "Okafor"), ("Okafor", "Smith"), ("Ann", "O'Brien"), ("Zoë", "Ærø"),
              ("Li", "Wang"), ("Ana", "van der Berg"), ("Jo", "Smith")]
    for n, (first, last) in enumerate(people):
        infra.patients.create(world.clinic.id, first_name=first, last_name=last, date_of_birth=date(2000, 1, 1),
                              chart_number=f"P-{n}")
    everyone = _walk_all(lambda c: infra.patients.page(world.clinic.id, limit=3, cursor=c))
    names = [p.display_name for p in everyone]
    assert len(names) == len(people) + 1 and names == sorted(names, key=str.lower)

    def found(text: str) -> list[str]:
        return [p.display_name for p in infra.patients.search(world.clinic.id, text)]

    assert found("okafor") == ["Okafor, Jo", "Okafor, Maya", "Smith, Okafor"]  # last names first, then first names
    assert found("Okafor, M") == ["Okafor, Maya"]
    assert found("Maya Okafor") == ["Okafor, Maya"]
    assert found("van der") == ["van der Berg, Ana"]
    assert found("ÆR") == ["Ærø, Zoë"]
    assert found("P-5") == ["Wang, Li"]
    assert found("nobody") == []


def test_a_search_that_matches_more_than_a_page_says_so(infra):
    world = make_clinic(infra)
    for n in range(12):
        infra.patients.create(world.clinic.id, first_name=f"N{n:02d}", last_name="Smith",
                              date_of_birth=date(2000, 1, 1),
                              chart_number=f"S-{n}")
    page = infra.patients.search(world.clinic.id, "smi", limit=10)
    assert len(page) == 10 and page.truncated and page.cursor is None


def test_the_review_queue_lists_the_longest_waiting_first_and_a_revoked_version_joins_it(services, infra):
    world = make_clinic(infra)
    coordinator, doctor = world.actor(), world.actor(Role.DOCTOR)
    sims = []
    for n in range(5):
        patient = infra.patients.create(world.clinic.id, first_name="P", last_name=f"Q{n}",
                                        date_of_birth=date(2000, 1, 1), chart_number=f"Q-{n}")
        sims.append(services.simulations.create_version(
            coordinator, patient_id=patient.id, treatment_id=None, simulation_type=SimulationType.ALIGNER,
            name=f"Plan {n}", frames=new_frames(2), queue_renditions=False))
    first = services.review.queue(doctor, limit=2)
    assert [i.simulation.name for i in first] == ["Plan 0", "Plan 1"] and first.cursor
    rest = services.review.queue(doctor, limit=2, cursor=first.cursor)
    assert [i.simulation.name for i in rest] == ["Plan 2", "Plan 3"]
    services.review.approve(doctor, sims[0].id)
    services.review.approve(doctor, sims[1].id)
    assert [i.simulation.name for i in services.review.queue(doctor)] == ["Plan 2", "Plan 3", "Plan 4"]
    services.review.revoke(doctor, sims[0].id)  # waits again, from now
    assert [i.simulation.name for i in services.review.queue(doctor)] == ["Plan 2", "Plan 3", "Plan 4", "Plan 0"]


def test_a_changed_index_is_rebuilt_and_an_obsolete_one_dropped(infra):
    col = infra.db["sync_probe"]
    col.create_index([("clinicId", ASCENDING), ("key", ASCENDING)], unique=True,
                     partialFilterExpression={"key": {"$type": "string"}})
    col.create_index([("old", ASCENDING)])
    built = sync_indexes(col, [IndexModel([("clinicId", ASCENDING), ("key", ASCENDING)], unique=True,
                                          partialFilterExpression={"key": {"$gt": ""}})], obsolete=("old_1",))
    info = col.index_information()
    assert built == ["clinicId_1_key_1"] and "old_1" not in info
    assert info["clinicId_1_key_1"]["partialFilterExpression"] == {"key": {"$gt": ""}}
    assert sync_indexes(col, [IndexModel([("clinicId", ASCENDING), ("key", ASCENDING)], unique=True,
                                         partialFilterExpression={"key": {"$gt": ""}})]) == []


def test_a_forged_cursor_or_page_size_is_refused_with_a_clear_message(infra):
    world = make_clinic(infra)
    with pytest.raises(ValidationError, match="page link is not valid"):
        infra.exports.list_recent(world.clinic.id, cursor="bm90LWEtY3Vyc29y")
    with pytest.raises(ValidationError, match="1 to 1000 items"):
        infra.exports.list_recent(world.clinic.id, limit=5000)


@pytest.mark.parametrize(("edge", "depth", "expected"), [
    ("", 2, "aa"), ("sm\x1fjohn", 2, "sn"), ("az", 2, "ba"), ("zz", 2, None), ("o'brien", 2, "oa"),
    ("okafor\x1fjo", 3, "okb"), ("é", 1, None), ("0", 1, "a"),
])
def test_string_windows_step_between_letter_grid_points(edge, depth, expected):
    assert next_grid(edge, depth) == expected
