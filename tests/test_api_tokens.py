"""API tokens: shown once, stored as a hash, a subset of the user's permissions, expiry and revocation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.domain import Permission, Role
from core.errors import PermissionDeniedError, ValidationError
from tests.factories import make_clinic


def test_a_token_is_stored_as_a_hash_and_acts_with_its_subset_only(services, infra):
    world = make_clinic(infra)
    admin = world.actor(Role.ADMIN)
    doctor = world.users[Role.DOCTOR]
    secret, token = services.api_tokens.create(admin, user_id=doctor.id, name="Presentation builder",
                                               permissions={Permission.IMAGING_VIEW}, days=30)
    stored = infra.db["api_tokens"].find_one({})
    assert secret.startswith("tss_") and secret not in str(stored) and secret.split("_", 2)[2] not in str(stored)

    actor = services.api_tokens.authenticate(secret)
    assert actor.id == doctor.id and actor.token_id == token.id
    assert actor.can(Permission.IMAGING_VIEW) and not actor.can(Permission.IMAGING_APPROVE)
    with pytest.raises(PermissionDeniedError, match="token was not given imaging:export"):
        actor.require(Permission.IMAGING_EXPORT)
    assert any(e.action == "apitoken.created" and e.details["tokenId"] == token.id
               for e in infra.audit.list(world.clinic.id))


def test_a_token_cannot_exceed_its_user(services, infra):
    world = make_clinic(infra)
    with pytest.raises(ValidationError, match="does not have imaging:approve"):
        services.api_tokens.create(world.actor(Role.ADMIN), user_id=world.users[Role.PRESENTER].id, name="x",
                                   permissions={Permission.IMAGING_APPROVE}, days=1)
    with pytest.raises(PermissionDeniedError):
        services.api_tokens.create(world.actor(Role.DOCTOR), user_id=world.users[Role.DOCTOR].id, name="x",
                                   permissions={Permission.IMAGING_VIEW}, days=1)
    assert infra.db["api_tokens"].count_documents({}) == 0


def test_revoked_expired_forged_and_disabled_tokens_are_refused(services, infra):
    world = make_clinic(infra)
    admin = world.actor(Role.ADMIN)
    coordinator = world.users[Role.COORDINATOR]
    secret, token = services.api_tokens.create(admin, user_id=coordinator.id, name="bridge",
                                               permissions={Permission.IMAGING_VIEW}, days=1)
    assert services.api_tokens.authenticate(secret).id == coordinator.id
    with pytest.raises(PermissionDeniedError, match="valid API token"):
        services.api_tokens.authenticate(secret[:-2] + "xx")
    infra.db["api_tokens"].update_one({}, {"$set": {"expiresAt": token.createdAt - timedelta(seconds=1)}})
    with pytest.raises(PermissionDeniedError, match="expired"):
        services.api_tokens.authenticate(secret)
    infra.db["api_tokens"].update_one({}, {"$set": {"expiresAt": token.expiresAt}})
    services.sessions.update_user(admin, coordinator.id, active=False)
    with pytest.raises(PermissionDeniedError, match="disabled"):
        services.api_tokens.authenticate(secret)
    services.sessions.update_user(admin, coordinator.id, active=True)
    services.api_tokens.revoke(admin, token.id)
    with pytest.raises(PermissionDeniedError, match="revoked"):
        services.api_tokens.authenticate(secret)


def test_api_calls_are_audited_with_the_token_id_in_batches(services, infra):
    world = make_clinic(infra)
    secret, token = services.api_tokens.create(world.actor(Role.ADMIN), user_id=world.users[Role.DOCTOR].id,
                                               name="bridge", permissions={Permission.IMAGING_VIEW}, days=1)
    actor = services.api_tokens.authenticate(secret)
    for n in range(30):
        services.api_tokens.record_call(actor, method="GET", route="/imaging/simulations/{id}", status=200 + n % 2)
    services.api_tokens.flush_calls()
    calls = [e for e in infra.audit.list(world.clinic.id) if e.action == "api.call"]
    assert len(calls) == 30 and {e.details["tokenId"] for e in calls} == {token.id}
    assert secret not in str([e.details for e in calls])
    assert infra.audit.verify(world.clinic.id).intact


def test_an_admin_creates_and_revokes_a_token_on_the_users_page(app_env, services, infra):
    from streamlit.testing.v1 import AppTest

    from core.config import PROJECT_ROOT

    world = make_clinic(infra)
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=30)
    at.session_state["user_id"] = world.users[Role.ADMIN].id
    at.run()
    at.switch_page("pages/users.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="token-user").select(world.users[Role.PRESENTER].id).run()
    at.text_input[-1].input("Presentation builder")
    next(b for b in at.button if b.label == "Create token").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = [c.value for c in at.code]
    assert len(shown) == 1 and shown[0].startswith("tss_")
    actor = services.api_tokens.authenticate(shown[0])
    assert actor.id == world.users[Role.PRESENTER].id
    assert actor.permissions == {Permission.IMAGING_VIEW, Permission.IMAGING_EXPORT}
    at.run()
    assert not at.code  # shown once
    next(b for b in at.button if b.label == "Revoke").click().run()
    with pytest.raises(PermissionDeniedError, match="revoked"):
        services.api_tokens.authenticate(shown[0])
