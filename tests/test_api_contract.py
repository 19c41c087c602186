"""The HTTP API's contract against the real server: every endpoint × caller × own/other clinic.

Callers: the four roles (tokens with their user's full permissions), no token, an expired token, a
revoked token, and a token without the endpoint's permission. Targets: records of the caller's clinic,
or the same kind of record of another clinic (which must look exactly like a missing one).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.domain import ImportSource, Permission, Role
from core.imaging import encode_png
from core.services.imports import Upload
from core.services.visuals import OutputSpec, SnapshotSpec
from tests.api_stack import BAD, ROLES, ClinicSetup, Stack, start_stack, stop_stack
from tests.conftest import wait_until
from tests.factories import gradient_frame

VIEW, CAPTURE, EXPORT = Permission.IMAGING_VIEW, Permission.IMAGING_CAPTURE, Permission.IMAGING_EXPORT
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def stack(servers, tmp_path_factory) -> Iterator[Stack]:
    stack, process = start_stack(servers, tmp_path_factory.mktemp("api"))
    for setup in (stack.alpha, stack.beta):  # an export each clinic can look up
        doctor = setup.world.actor(Role.DOCTOR)
        setup.export_id = stack.services.visuals.export_snapshot(  # type: ignore[attr-defined]
            doctor, setup.approved.id, SnapshotSpec(0, OutputSpec("square"))).export.id
        setup.import_id = stack.services.imports.start(  # type: ignore[attr-defined]
            doctor, source=ImportSource.FILES, uploads=[Upload("stage0.png", _png(0))],
            patient_id=setup.world.patient.id, name="Staged", queue_analysis=False).id
    yield stack
    stop_stack(stack, process)


def _png(stage: int) -> bytes:
    return encode_png(gradient_frame(stage)).data


# name: (method, path, permission, success status)
ENDPOINTS = {
    "details": ("GET", "/api/imaging/simulations/{sim}", VIEW, 200),
    "list_by_spec_path": ("GET", "/api/imaging/simulations/{patient}", VIEW, 200),
    "list": ("GET", "/api/imaging/patients/{patient}/simulations", VIEW, 200),
    "frames": ("GET", "/api/imaging/simulations/{sim}/frames", VIEW, 200),
    "export_status": ("GET", "/api/imaging/exports/{export}", VIEW, 200),
    "import_status": ("GET", "/api/imaging/imports/{import_}", CAPTURE, 200),
    "export": ("POST", "/api/imaging/simulations/{sim}/export", EXPORT, 202),
    "video": ("POST", "/api/imaging/simulations/{sim}/video", EXPORT, 202),
    "snapshot": ("POST", "/api/imaging/simulations/{sim}/snapshot", EXPORT, 201),
    "comparison": ("POST", "/api/imaging/simulations/{sim}/comparison", EXPORT, 201),
    "import": ("POST", "/api/imaging/simulations/import", CAPTURE, 202),
}
ROLE_PERMISSIONS = {"coordinator": {VIEW, CAPTURE, EXPORT}, "doctor": {VIEW, CAPTURE, EXPORT},
                    "presenter": {VIEW, EXPORT}, "admin": {VIEW}}


def _request(name: str, target: ClinicSetup) -> tuple[str, str, dict]:
    method, path, _, _ = ENDPOINTS[name]
    url = path.format(sim=target.approved.id, patient=target.world.patient.id,
                      export=getattr(target, "export_id", ""), import_=getattr(target, "import_id", ""))
    kwargs: dict = {}
    if name == "export":
        kwargs["json"] = {"format": "zip"}
    elif name == "video":
        kwargs["json"] = {"preset": "720p", "fps": 10, "titleCard": False, "endCard": False}
    elif name == "snapshot":
        kwargs["json"] = {"frameIndex": 1, "output": {"size": "square"}}
    elif name == "comparison":
        kwargs["json"] = {"beforeFrameIndex": 0, "predicted": [2], "output": {"size": "square"}}
    elif name == "import":
        kwargs["files"] = [("files", (f"stage{n}.png", _png(n), "image/png")) for n in range(2)]
        kwargs["data"] = {"patientId": target.world.patient.id, "name": "From the API", "source": "files"}
    return method, url, kwargs


def _expected(name: str, who: str, clinic: str) -> int:
    _, _, permission, success = ENDPOINTS[name]
    if who in ("none", "expired", "revoked"):
        return 401
    if who == "no_permission" or permission not in ROLE_PERMISSIONS[who]:
        return 403
    return success if clinic == "own" else 404


CALLERS = (*ROLES, *[b for b in BAD if b not in ("no_view", "no_write")], "no_permission")


@pytest.mark.parametrize("clinic", ["own", "other"])
@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_endpoint_answers_each_caller_as_the_spec_says(stack: Stack, name: str, who: str, clinic: str):
    token = ("no_write" if ENDPOINTS[name][2] is CAPTURE else "no_view") if who == "no_permission" else who
    target = stack.alpha if clinic == "own" else stack.beta
    method, url, kwargs = _request(name, target)
    with stack.client(token) as client:
        answer = client.request(method, url, **kwargs)
    expected = _expected(name, who, clinic)
    assert answer.status_code == expected, answer.text
    if expected >= 400:
        assert answer.headers["content-type"].startswith(PROBLEM)
        body = answer.json()
        assert body["status"] == expected and body["detail"] and body["title"]
        if expected == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer")
        if expected == 404:  # another clinic's record looks exactly like a missing one
            assert target.world.patient.lastName not in answer.text and target.approved.name not in answer.text
        return
    body = answer.json()
    if name == "details":
        assert body["kind"] == "simulation" and body["id"] == target.approved.id
        assert body["simulationType"] == "ALIGNER" and body["frameCount"] == 3 and body["isApproved"] is True
    elif name in ("list", "list_by_spec_path"):
        ids = [item["id"] for item in body["items"]]
        assert target.approved.id in ids
        assert (target.draft.id in ids) is (who != "presenter")  # presenters see approved versions only
    elif name == "frames":
        assert [f["stage"] for f in body["items"]] == [0, 1, 2] and body["items"][0]["imageUrl"].startswith("/files/")
    elif name in ("export", "video"):
        assert answer.headers["location"] == f"/api/imaging/exports/{body['id']}"
        assert body["exportType"] == ("ASSETS" if name == "export" else "VIDEO")
        assert body["state"] in ("QUEUED", "RUNNING", "DONE", "PENDING")
    elif name in ("snapshot", "comparison"):
        assert body["state"] == "DONE"
        url_field = "imageUrl" if name == "snapshot" else "comparisonUrl"
        assert body[url_field].startswith("/files/") and answer.headers["location"].endswith(body["id"])
    elif name == "export_status":
        assert body["id"] == target.export_id and body["imageUrl"].startswith("/files/")  # type: ignore[attr-defined]
    elif name == "import_status":
        assert body["id"] == target.import_id and body["state"] == "QUEUED"  # type: ignore[attr-defined]
    elif name == "import":
        assert body["state"] == "QUEUED" and answer.headers["location"] == f"/api/imaging/imports/{body['id']}"


def test_presenters_tokens_see_approved_versions_only(stack: Stack):
    draft = stack.alpha.draft.id
    with stack.client("presenter") as client:
        assert client.get(f"/api/imaging/simulations/{draft}").status_code == 404
        assert client.get(f"/api/imaging/simulations/{draft}/frames").status_code == 404
        assert client.post(f"/api/imaging/simulations/{draft}/snapshot", json={}).status_code == 404
        assert client.post(f"/api/imaging/simulations/{draft}/video", json={}).status_code == 404
    with stack.client("doctor") as client:
        assert client.get(f"/api/imaging/simulations/{draft}").json()["isApproved"] is False


def test_lists_are_cursor_pages(stack: Stack):
    patient = stack.alpha.world.patient.id
    with stack.client("coordinator") as client:
        first = client.get(f"/api/imaging/patients/{patient}/simulations", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["nextCursor"]
        second = client.get(f"/api/imaging/patients/{patient}/simulations",
                            params={"limit": 1, "cursor": first["nextCursor"]}).json()
        assert len(second["items"]) == 1 and second["items"][0]["id"] != first["items"][0]["id"]
        assert second["nextCursor"] is None
        frames = client.get(f"/api/imaging/simulations/{stack.alpha.approved.id}/frames", params={"limit": 2}).json()
        rest = client.get(f"/api/imaging/simulations/{stack.alpha.approved.id}/frames",
                          params={"limit": 2, "cursor": frames["nextCursor"]}).json()
        assert [f["index"] for f in frames["items"] + rest["items"]] == [0, 1, 2] and rest["nextCursor"] is None
        bad = client.get(f"/api/imaging/patients/{patient}/simulations", params={"cursor": "nonsense"})
        assert bad.status_code == 422 and "page link" in bad.json()["detail"]


def test_download_links_work_for_the_token_that_got_them_only(stack: Stack):
    sim = stack.alpha.approved.id
    with stack.client("coordinator") as client:
        link = client.post(f"/api/imaging/simulations/{sim}/snapshot", json={"output": {"size": "square"}}
                           ).json()["imageUrl"]
        answer = client.get(link)
        assert answer.status_code == 200 and answer.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert answer.headers["cache-control"] == "no-store"
    with stack.client("doctor") as other:  # another token (another user) of the same clinic
        assert other.get(link).status_code == 403
    with stack.client("none") as anonymous:
        assert anonymous.get(link).status_code == 401


def test_every_call_is_audited_with_the_token_id_never_the_token(stack: Stack):
    token_id = stack.alpha.token_ids["admin"]
    with stack.client("admin") as client:
        assert client.get(f"/api/imaging/simulations/{stack.alpha.approved.id}").status_code == 200
        assert client.post(f"/api/imaging/simulations/{stack.alpha.approved.id}/video", json={}).status_code == 403

    def calls():
        admin = stack.alpha.world.users[Role.ADMIN].id  # the admin's own events: few, whatever ran before
        events = [e for e in stack.infra.audit.page(stack.alpha.world.clinic.id, user_id=admin, limit=1000)
                  if e.action == "api.call" and e.details.get("tokenId") == token_id]
        return events if len(events) >= 2 else None

    events = wait_until(calls, timeout=20, what="api.call audit events")
    routes = {(e.details["method"], e.details["route"], e.details["status"]) for e in events}
    assert ("GET", "/imaging/simulations/{id}", 200) in routes
    assert ("POST", "/imaging/simulations/{id}/video", 403) in routes
    assert stack.alpha.tokens["admin"] not in str([e.details for e in events])
    assert stack.infra.audit.verify(stack.alpha.world.clinic.id).intact


def test_revocation_applies_on_the_next_request(stack: Stack):
    admin = stack.alpha.world.actor(Role.ADMIN)
    secret, token = stack.services.api_tokens.create(admin, user_id=stack.alpha.world.users[Role.DOCTOR].id,
                                                     name="short-lived", permissions={VIEW}, days=1)
    headers = {"Authorization": f"Bearer {secret}"}
    url = f"{stack.url}/api/imaging/simulations/{stack.alpha.approved.id}"
    import httpx

    assert httpx.get(url, headers=headers, timeout=30).status_code == 200
    stack.services.api_tokens.revoke(admin, token.id)
    refused = httpx.get(url, headers=headers, timeout=30)
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


def test_a_token_past_its_rate_gets_429_with_retry_after(stack: Stack):
    url = f"/api/imaging/simulations/{stack.alpha.approved.id}"
    answers = []
    with stack.client("throttled") as client:
        # A fixed one-minute window of 150: within 301 calls (two windows at most) one must be refused.
        while len(answers) < 301 and (not answers or answers[-1].status_code != 429):
            answers.append(client.get(url))
    codes = [a.status_code for a in answers]
    assert codes[-1] == 429 and set(codes[:-1]) == {200} and len(codes) > 150, codes
    refused = answers[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 61 and refused.headers["content-type"].startswith(PROBLEM)
    with stack.client("coordinator") as other:  # the limit is per token
        assert other.get(url).status_code == 200


def test_bad_bodies_are_problem_json_with_a_clear_detail(stack: Stack):
    sim = stack.alpha.approved.id
    with stack.client("coordinator") as client:
        empty = client.post(f"/api/imaging/simulations/{sim}/comparison", json={"predicted": []})
        assert empty.status_code == 422 and empty.headers["content-type"].startswith(PROBLEM)
        assert "predicted" in empty.json()["detail"]
        frame = client.post(f"/api/imaging/simulations/{sim}/snapshot", json={"frameIndex": 99})
        assert frame.status_code == 422 and "99" in frame.json()["detail"]
        view = client.post(f"/api/imaging/simulations/{sim}/video", json={"view": "left"})
        assert view.status_code == 422 and "no left view" in view.json()["detail"]


def test_the_openapi_document_is_3_1_and_lists_the_spec_endpoints(stack: Stack):
    import httpx

    document = httpx.get(f"{stack.url}/api/openapi.json", timeout=30).json()
    assert document["openapi"].startswith("3.1")
    paths = set(document["paths"])
    assert {"/imaging/simulations/{id}", "/imaging/simulations/import", "/imaging/simulations/{id}/export",
            "/imaging/simulations/{id}/snapshot", "/imaging/simulations/{id}/video", "/imaging/simulations/{id}/frames",
            "/imaging/simulations/{id}/comparison", "/imaging/patients/{patientId}/simulations",
            "/imaging/exports/{id}"} <= paths
    errors = document["paths"]["/imaging/simulations/{id}/video"]["post"]["responses"]["404"]["content"]
    assert list(errors) == [PROBLEM]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_ids_with_control_characters_get_the_apis_own_404(stack: Stack):
    with stack.client("coordinator") as client:
        for path in ("/api/imaging/simulations/a%0Ab", "/api/imaging/simulations/a%0Ab/comparison"):
            answer = client.get(path) if "comparison" not in path else client.post(path, json={"predicted": [0]})
            assert answer.status_code == 404 and answer.headers["content-type"].startswith(PROBLEM), answer.text
