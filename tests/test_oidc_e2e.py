"""OpenID Connect sign-in end to end: Chromium → the app's "Sign in" (st.login) → a real OIDC provider
(tests/oidc/provider.mjs, the `oidc-provider` npm package) → back to the app → the invited doctor's
identity is bound and they approve a version; an identity nobody invited gets no access, and neither
does an invited e-mail the provider does not vouch for (`email_verified: "false"`).

Needs Debian's Chromium and `npm --prefix tests/oidc ci`; skipped loudly ("OIDC E2E SKIPPED: ...")
without them. Streamlit reads only the temp secrets file (`--secrets.files`), and core/config.py reads the
same one (STREAMLIT_SECRETS_PATH), so a developer's own `.streamlit/secrets.toml` is never used.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import PROJECT_ROOT
from core.domain import Role, SimulationType
from core.launcher import free_port
from tests.conftest import CHROMIUM, start_streamlit, stop_process, wait_until
from tests.factories import make_clinic, new_frames

OIDC_DIR = PROJECT_ROOT / "tests" / "oidc"
NODE = shutil.which("node")
CLIENT_ID = "treatment-studio-e2e"
NO_ACCESS = "You have no access to Treatment Simulation Studio yet; ask your clinic admin to invite you."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason="OIDC E2E SKIPPED: Debian's chromium is not installed "
                              "(apt-get install chromium; .ci/run does this)"),
    pytest.mark.skipif(NODE is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir(),
                       reason="OIDC E2E SKIPPED: node or tests/oidc/node_modules/oidc-provider is missing "
                              "(run `npm --prefix tests/oidc ci`)"),
]


@dataclass(frozen=True)
class Provider:
    issuer: str
    client_secret: str


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture
def app_port() -> int:
    return free_port()


@pytest.fixture
def email_verified_claim() -> str:
    """The provider's `email_verified` claim as JSON; a test may parametrize it."""
    return "true"


@pytest.fixture
def provider(app_port: int, email_verified_claim: str, tmp_path: Path) -> Iterator[Provider]:
    port, client_secret = free_port(), secrets.token_urlsafe(24)
    log = tmp_path / "oidc-provider.log"
    process = subprocess.Popen(
        [NODE, "provider.mjs", str(port)], cwd=OIDC_DIR,
        env={**os.environ, "OIDC_CLIENT_ID": CLIENT_ID, "OIDC_CLIENT_SECRET": client_secret,
             "OIDC_REDIRECT_URI": f"http://127.0.0.1:{app_port}/oauth2callback",
             "OIDC_EMAIL_VERIFIED": email_verified_claim},
        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )
    try:
        wait_until(lambda: "OIDC PROVIDER READY" in _log(log) or process.poll() is not None,
                   timeout=30, what="the OIDC provider")
        assert process.poll() is None, f"the OIDC provider exited:\n{_log(log)}"
        yield Provider(f"http://127.0.0.1:{port}", client_secret)
    finally:
        stop_process(process)


@pytest.fixture
def secrets_file(provider: Provider, app_port: int, tmp_path: Path) -> Path:
    path = tmp_path / ".streamlit" / "secrets.toml"
    path.parent.mkdir()
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{provider.client_secret}"\n'
        f'server_metadata_url = "{provider.issuer}/.well-known/openid-configuration"\n'
    )
    return path


@pytest.fixture
def app_url(env: dict[str, str], app_port: int, secrets_file: Path, tmp_path: Path) -> Iterator[str]:
    app_env = {**os.environ, **env, "STREAMLIT_SECRETS_PATH": str(secrets_file)}
    app_env.pop("DEV_SIGNIN", None)
    process, url = start_streamlit(app_env, tmp_path / "streamlit.log", "--secrets.files", str(secrets_file),
                                   port=app_port)
    try:
        yield url
    finally:
        stop_process(process)


def _sign_in_at_provider(page, app_url: str, provider: Provider, login: str, *, start: str = "") -> None:
    """Open `start` (the app's root unless given), sign in at the provider, and come back to the app."""
    from playwright.sync_api import expect

    page.goto(start or app_url)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(provider.issuer)}/interaction/"))
    page.get_by_label("Login name").fill(login)
    page.get_by_label("Password").fill("any password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Authorize access")).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(app_url)}/"))


def _screenshot(page, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / name)


def test_an_invited_doctor_signs_in_with_the_provider_and_approves_a_version(
        services, infra, provider, app_url, page, tmp_path):
    from playwright.sync_api import expect

    world = make_clinic(infra)
    invited = services.sessions.invite(world.actor(Role.ADMIN), email="drsmile@alpha.test", name="Dr Smile",
                                       role=Role.DOCTOR)
    assert invited.subject is None
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="Plan", frames=new_frames(3), queue_renditions=False)

    # A link a coordinator sent: the provider returns to the app's root, the app to the link.
    _sign_in_at_provider(page, app_url, provider, "drsmile", start=f"{app_url}/review?sim={sim.id}")
    expect(page.get_by_role("heading", name="Review")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/review\?.*sim={sim.id}"))
    assert "tss_next" not in {c["name"] for c in page.context.cookies()}  # used once, then dropped
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Dr Smile")).to_be_visible()
    expect(sidebar.get_by_text("doctor", exact=True)).to_be_visible()  # Role: `doctor`
    nav = page.get_by_test_id("stSidebarNav")
    expect(nav.get_by_role("link", name="Review")).to_be_visible()
    expect(nav.get_by_role("link", name="Integrations")).to_have_count(0)

    page.get_by_role("button", name="Approve this version…").click()
    page.get_by_role("dialog").get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_role("button", name="Undo")).to_be_visible()
    _screenshot(page, tmp_path, "oidc-doctor-approved.png")

    approved = services.simulations.get(world.actor(), sim.id)
    assert approved.isApproved and approved.approvedBy == invited.id
    bound = infra.users.find_by_identity(provider.issuer, "drsmile")
    assert bound is not None and bound.id == invited.id
    signins = [e for e in infra.audit.list(world.clinic.id) if e.action == "signin"]
    assert signins and {(e.userId, e.details.get("method"), e.details.get("subject")) for e in signins} \
        == {(invited.id, "oidc", "drsmile")}


def test_an_identity_nobody_invited_gets_no_access(services, infra, provider, app_url, page, tmp_path):
    from playwright.sync_api import expect

    make_clinic(infra)
    _sign_in_at_provider(page, app_url, provider, "stranger")
    expect(page.get_by_text(NO_ACCESS)).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
    _screenshot(page, tmp_path, "oidc-stranger-no-access.png")
    assert infra.users.find_by_identity(provider.issuer, "stranger") is None


@pytest.mark.parametrize("email_verified_claim", ['"false"'], ids=["email_verified-string-false"])
def test_an_unverified_email_does_not_bind_an_invited_user(services, infra, provider, app_url, page, tmp_path):
    """Some providers send `email_verified` as a string; "false" must not count as verified."""
    from playwright.sync_api import expect

    world = make_clinic(infra)
    invited = services.sessions.invite(world.actor(Role.ADMIN), email="drsmile@alpha.test", name="Dr Smile",
                                       role=Role.DOCTOR)
    _sign_in_at_provider(page, app_url, provider, "drsmile")
    expect(page.get_by_text(NO_ACCESS)).to_be_visible()
    expect(page.get_by_test_id("stSidebarNav")).to_have_count(0)
    assert infra.users.find_by_identity(provider.issuer, "drsmile") is None
    assert infra.users.get(world.clinic.id, invited.id).subject is None
