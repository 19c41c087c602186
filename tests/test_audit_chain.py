"""The audit trail's keyed chain: every way of rewriting it quietly is caught, appends stay one chain.

Each tampering case edits the database the way someone with direct access would, then runs the
operator's `python -m core.cli audit verify` (a real process, the same key file) and expects exit 1
with the problem named, while the untouched second clinic stays intact.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import bson
import pytest
from bson import ObjectId

from core.config import PROJECT_ROOT
from core.domain import Role
from core.errors import ConfigurationError
from core.keys import load_keyring, parse_keyring
from core.migrations import prepare_database
from core.repositories.audit import AuditRepository, canonical_bytes
from tests.factories import make_clinic


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=PROJECT_ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def trail(infra, services):
    """Two clinics; the first with ten events."""
    alpha, beta = make_clinic(infra, "alpha"), make_clinic(infra, "beta", chart="B-1")
    for n in range(10):
        infra.audit.append(alpha.clinic.id, action="signin", user_id=alpha.users[Role.ADMIN].id,
                           details={"n": n})
    infra.audit.append(beta.clinic.id, action="signin")
    return alpha, beta


def _events(infra, clinic_id: str) -> list[dict]:
    return sorted(infra.db.audit_events.find({"clinicId": ObjectId(clinic_id)}), key=lambda d: d["seq"])


def _verify_fails(env, infra, clinic_id: str, expected: str) -> None:
    result = _cli(env, "audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TAMPERING DETECTED" in result.stdout
    assert expected in result.stdout, result.stdout
    assert all(clinic_id in line for line in result.stdout.splitlines()[:-1]), "only the tampered clinic is named"


def test_an_untouched_trail_verifies(env, infra, trail):
    result = _cli(env, "audit", "verify")
    assert result.returncode == 0 and "audit trail intact" in result.stdout
    assert "11 event(s)" in result.stdout


def test_editing_the_time_of_an_event_is_caught(env, infra, trail):
    alpha, _ = trail
    event = _events(infra, alpha.clinic.id)[4]
    infra.db.audit_events.update_one({"_id": event["_id"]}, {"$set": {"at": event["at"] - timedelta(hours=3)}})
    _verify_fails(env, infra, alpha.clinic.id, f"event {event['seq']} was altered")


def test_adding_a_field_to_an_event_is_caught(env, infra, trail):
    alpha, _ = trail
    event = _events(infra, alpha.clinic.id)[2]
    infra.db.audit_events.update_one({"_id": event["_id"]}, {"$set": {"note": "harmless"}})
    _verify_fails(env, infra, alpha.clinic.id, "has fields it was not written with (note)")


def test_deleting_the_last_event_is_caught(env, infra, trail):
    alpha, _ = trail
    infra.db.audit_events.delete_one({"_id": _events(infra, alpha.clinic.id)[-1]["_id"]})
    _verify_fails(env, infra, alpha.clinic.id, "event 10 is missing (the trail was cut short)")


def test_deleting_the_last_five_events_is_caught(env, infra, trail):
    alpha, _ = trail
    infra.db.audit_events.delete_many({"_id": {"$in": [e["_id"] for e in _events(infra, alpha.clinic.id)[-5:]]}})
    _verify_fails(env, infra, alpha.clinic.id, "events 6–10 are missing (the trail was cut short)")


def test_deleting_every_event_of_a_clinic_is_caught(env, infra, trail):
    alpha, _ = trail
    infra.db.audit_events.delete_many({"clinicId": ObjectId(alpha.clinic.id)})
    _verify_fails(env, infra, alpha.clinic.id, "events 1–10 are missing")


def test_deleting_the_trail_and_its_head_is_caught(env, infra, trail):
    alpha, _ = trail
    infra.db.audit_events.delete_many({"clinicId": ObjectId(alpha.clinic.id)})
    infra.db.audit_heads.delete_one({"_id": ObjectId(alpha.clinic.id)})
    _verify_fails(env, infra, alpha.clinic.id, "the chain head is missing")


def test_editing_an_event_and_rehashing_the_rest_without_the_key_is_caught(env, infra, trail):
    alpha, _ = trail
    events = _events(infra, alpha.clinic.id)
    events[3]["details"] = {"n": 99}
    previous = events[2]["hash"]
    forged_key = b"an attacker's guess at the key...."
    for event in events[3:]:  # a consistent chain, signed with a key that is not the server's
        event["prevHash"] = previous
        event["hash"] = hmac.new(forged_key, canonical_bytes({k: v for k, v in event.items() if k != "hash"}),
                                 hashlib.sha256).hexdigest()
        infra.db.audit_events.replace_one({"_id": event["_id"]}, event)
        previous = event["hash"]
    head = infra.db.audit_heads.find_one({"_id": ObjectId(alpha.clinic.id)})
    infra.db.audit_heads.update_one({"_id": head["_id"]}, {"$set": {"hash": previous}})
    _verify_fails(env, infra, alpha.clinic.id, "event 4 was altered")
    assert "the chain head was altered" in _cli(env, "audit", "verify").stdout


def test_an_event_appended_outside_the_app_is_caught(env, infra, trail):
    alpha, _ = trail
    last = _events(infra, alpha.clinic.id)[-1]
    infra.db.audit_events.insert_one({**last, "_id": ObjectId(), "seq": 11, "prevHash": last["hash"]})
    _verify_fails(env, infra, alpha.clinic.id, "event 11 lies beyond the chain head")


def test_concurrent_appends_form_one_gap_free_chain(infra, trail):
    alpha, _ = trail
    errors: list[BaseException] = []

    def append_many(worker: int) -> None:
        try:
            for n in range(15):
                infra.audit.append(alpha.clinic.id, action="simulation.view", details={"w": worker, "n": n})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=append_many, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    seqs = [e["seq"] for e in _events(infra, alpha.clinic.id)]
    assert seqs == list(range(1, 101))
    assert infra.audit.verify(alpha.clinic.id).intact
    assert infra.audit.head_seq(alpha.clinic.id) == 100


def test_the_admin_check_resumes_from_its_checkpoint_and_still_sees_a_cut(infra, services, trail):
    alpha, _ = trail
    admin = alpha.actor(Role.ADMIN)
    first = services.audit.verify(admin)
    assert first.intact and first.first_seq == 1
    services.sessions.invite(admin, email="x@alpha.test", name="X", role=Role.DOCTOR)
    second = services.audit.verify(admin)
    assert second.intact and second.first_seq == first.last_seq + 1 and second.checked == 2  # its own event + invite
    head = infra.audit.head_seq(alpha.clinic.id)  # the second check's own event
    infra.db.audit_events.delete_one({"clinicId": ObjectId(alpha.clinic.id), "seq": head})
    third = services.audit.verify(admin)
    assert third.first_seq == head and third.problems == (f"event {head} is missing (the trail was cut short)",)


def test_a_forged_checkpoint_is_ignored(infra, trail):
    alpha, _ = trail
    infra.audit.verify(alpha.clinic.id)
    infra.db.audit_events.update_one({"clinicId": ObjectId(alpha.clinic.id), "seq": 2},
                                     {"$set": {"action": "nothing"}})
    infra.db.audit_checkpoints.update_one({"_id": ObjectId(alpha.clinic.id)}, {"$set": {"seq": 10, "hash": "x"}})
    report = infra.audit.verify(alpha.clinic.id, from_checkpoint=True)
    assert report.first_seq == 1 and "event 2 was altered after it was written" in report.problems


def test_rotated_keys_still_verify_old_events(infra, settings, trail):
    alpha, _ = trail
    old = infra.audit_keys
    rotated = parse_keyring(f"k2:{'ab' * 32},{old.current}:{old.keys[old.current].hex()}", source="test")
    repo = AuditRepository(infra.db, rotated)
    repo.append(alpha.clinic.id, action="signin")
    assert repo.verify(alpha.clinic.id).intact
    newest = _events(infra, alpha.clinic.id)[-1]
    assert newest["keyId"] == "k2" and _events(infra, alpha.clinic.id)[0]["keyId"] == old.current
    without_old = AuditRepository(infra.db, parse_keyring(f"k2:{'ab' * 32}", source="test"))
    assert any("which this server does not have" in p for p in without_old.verify(alpha.clinic.id).problems)


def test_keys_must_be_long_enough_and_the_key_file_is_private(tmp_path):
    with pytest.raises(ConfigurationError, match="64 or more hex digits"):
        parse_keyring("k1:abcd", source="AUDIT_KEYS")
    ring = load_keyring(None, tmp_path / "keys" / "audit.keys", variable="AUDIT_KEYS")
    assert len(ring.keys[ring.current]) == 32
    assert (tmp_path / "keys" / "audit.keys").stat().st_mode & 0o077 == 0
    assert load_keyring(None, tmp_path / "keys" / "audit.keys", variable="AUDIT_KEYS") == ring


def test_a_trail_written_before_keyed_chains_is_adopted_and_still_verified(infra):
    world = make_clinic(infra, "legacy")
    clinic = ObjectId(world.clinic.id)
    infra.db.audit_heads.delete_one({"_id": clinic})
    infra.db.migrations.delete_many({})
    previous = ""
    for seq in (1, 2, 3):  # the unkeyed scheme of earlier releases
        body = {"clinicId": str(clinic), "seq": seq, "action": "signin", "outcome": "ok",
                "at": f"2026-11-0{seq}T10:00:00+00:00", "userId": None, "role": None, "patientId": None,
                "simulationId": None, "details": {}}
        import json

        digest = hashlib.sha256((previous + json.dumps(body, sort_keys=True, separators=(",", ":"))).encode())
        doc = {**body, "_id": ObjectId(), "clinicId": clinic, "atIso": body["at"], "prevHash": previous,
               "hash": digest.hexdigest()}
        doc["at"] = bson.datetime_ms.DatetimeMS(0).as_datetime()
        infra.db.audit_events.insert_one(doc)
        previous = doc["hash"]
    assert "2026-12-audit-chain-heads" in prepare_database(infra)
    infra.audit.append(world.clinic.id, action="signin")
    report = infra.audit.verify(world.clinic.id)
    assert report.intact and report.last_seq == 4, report.problems
    infra.db.audit_events.update_one({"clinicId": clinic, "seq": 2}, {"$set": {"action": "signout"}})
    assert "event 2 was altered after it was written" in infra.audit.verify(world.clinic.id).problems


def test_the_signed_form_sorts_keys_at_every_level_and_keeps_value_types():
    """The bytes an event's signature covers: the same for any field order, nested mappings and lists sorted
    too, types kept (an ObjectId is not its hex); `without` leaves out a top-level field only."""
    oid, at = ObjectId(), datetime(2026, 12, 2, 17, 0, tzinfo=UTC)
    doc = {"seq": 7, "details": {"z": [{"b": 2, "a": 1}, 3], "hash": "nested"}, "at": at, "userId": oid,
           "hash": "top"}
    expected = bson.encode({"at": at, "details": {"hash": "nested", "z": [{"a": 1, "b": 2}, 3]}, "seq": 7,
                            "userId": oid})
    assert canonical_bytes(doc, without="hash") == expected
    assert canonical_bytes(dict(reversed(doc.items())), without="hash") == expected
    assert canonical_bytes(doc) != expected and canonical_bytes({**doc, "userId": str(oid)}, without="hash") != expected
