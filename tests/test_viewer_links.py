"""Vendor web viewers by link: URL rules, the clinic allow-list, the sandboxed embed, audit and roles."""

from __future__ import annotations

import pytest

from core.domain import Role, SimulationType
from core.errors import NotFoundError, PermissionDeniedError, ValidationError
from core.viewer_links import (
    REFERRER_POLICY,
    SANDBOX,
    embed_html,
    host_allowed,
    normalise_host_pattern,
    parse_viewer_url,
)
from tests.factories import make_clinic, new_frames

SHARE = "https://clincheck.invisalign.com/share/AbC123?case=7#view"

# --- parsing ------------------------------------------------------------------------------------------


def test_an_https_link_is_accepted_and_normalised() -> None:
    viewer = parse_viewer_url(f"  {SHARE}  ")
    assert viewer.host == "clincheck.invisalign.com"
    assert viewer.url == SHARE
    assert parse_viewer_url("HTTPS://Portal.3Shape.COM:443/v/1").url == "https://portal.3shape.com/v/1"


@pytest.mark.parametrize(("url", "message"), [
    ("http://clincheck.invisalign.com/share/1", "Only https"),
    ("javascript:alert(document.cookie)", "“javascript:” links are refused"),
    ("JaVaScRiPt:alert(1)", "“javascript:” links are refused"),
    ("data:text/html;base64,PHNjcmlwdD4=", "“data:” links are refused"),
    ("file:///etc/passwd", "“file:” links are refused"),
    ("clincheck.invisalign.com/share/1", "must start with https://"),
    ("https:clincheck.invisalign.com", "followed by the viewer's host"),
    ("https://clincheck.invisalign.com@evil.example/share", "user name or password"),
    ("https://user:pass@clincheck.invisalign.com/", "user name or password"),
    ("https://evil.example\\@clincheck.invisalign.com/", "backslashes"),
    ("https://clincheck.invisalign.com/a b", "spaces"),
    ("https://clincheck.invisalign.com/\x00", "control characters"),
    ("https://clincheck.invisalign.com:8443/", "port 8443"),
    ("https://127.0.0.1/viewer", "IP address"),
    ("https://0x7f000001/viewer", "IP address"),
    ("https://[::1]/viewer", "IP address"),
    ("https://evil%2ecom/viewer", "not a valid internet host"),
    ("https://localhost/viewer", "not a valid internet host"),
    ("", "Paste the viewer's link"),
    ("https://example.com/" + "a" * 3000, "characters long"),
])
def test_unsafe_or_malformed_links_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_viewer_url(url)


def test_allow_list_entries_are_exact_hosts_or_subdomain_wildcards() -> None:
    assert normalise_host_pattern("  Clincheck.Invisalign.com ") == "clincheck.invisalign.com"
    assert normalise_host_pattern("*.invisalign.com") == "*.invisalign.com"
    assert normalise_host_pattern("https://portal.3shape.com/some/path") == "portal.3shape.com"
    for bad, message in (("*.com", "whole domain"), ("*", "wildcard"), ("evil.*.com", "wildcard"),
                         ("host.example:443", "only the host name"), ("10.0.0.1", "IP address"),
                         ("http://viewer.example", "Only https")):
        with pytest.raises(ValidationError, match=message):
            normalise_host_pattern(bad)
    patterns = ["*.invisalign.com", "portal.3shape.com"]
    assert host_allowed("clincheck.invisalign.com", patterns)
    assert host_allowed("portal.3shape.com", patterns)
    assert not host_allowed("invisalign.com", patterns)  # the wildcard covers subdomains only
    assert not host_allowed("evilinvisalign.com", patterns)  # label boundaries, not string suffixes
    assert not host_allowed("invisalign.com.evil.example", patterns)
    assert not host_allowed("x.portal.3shape.com", patterns)


def test_look_alike_unicode_hosts_never_match_ascii_entries() -> None:
    spoof = parse_viewer_url("https://clincheck.іnvisalign.com/share/1")  # Cyrillic "і"
    assert spoof.host.startswith("clincheck.xn--")
    assert not host_allowed(spoof.host, ["*.invisalign.com"])


def test_the_embed_is_a_sandboxed_no_referrer_iframe() -> None:
    html = embed_html(parse_viewer_url('https://clincheck.invisalign.com/s?a=1&b="x"'.replace('"', "%22")))
    assert f'sandbox="{SANDBOX}"' in html and f'referrerpolicy="{REFERRER_POLICY}"' in html
    assert '<meta name="referrer" content="no-referrer">' in html
    assert 'src="https://clincheck.invisalign.com/s?a=1&amp;b=%22x%22"' in html
    for power in ("allow-top-navigation", "allow-popups", "allow-forms", "allow-modals", "allow-downloads"):
        assert power not in SANDBOX


# --- the service --------------------------------------------------------------------------------------


@pytest.fixture
def world(services, infra):
    world = make_clinic(infra)
    sim = services.simulations.create_version(
        world.actor(), patient_id=world.patient.id, treatment_id=world.treatment.id,
        simulation_type=SimulationType.ALIGNER, name="ClinCheck", frames=new_frames(2), queue_renditions=False)
    services.viewers.add_host(world.actor(Role.ADMIN), "*.invisalign.com", "ClinCheck")
    return world, sim


def test_an_allowed_link_is_stored_audited_by_host_and_embedded(services, infra, world) -> None:
    world, sim = world
    services.viewers.set_link(world.actor(), sim.id, SHARE)
    embed = services.viewers.embed(world.actor(Role.DOCTOR), sim.id)
    assert embed is not None and embed.refused is None and f'src="{SHARE}"' in embed.html
    event = infra.db.audit_events.find_one({"action": "simulation.modified"})
    assert event["details"]["change"] == "viewer link" and event["details"]["after"] == "clincheck.invisalign.com"
    assert "share/AbC123" not in str(event)  # a share link is a bearer token: never in the audit trail
    history = services.simulations.history(world.actor(), sim.id)
    assert any("viewer link: – → clincheck.invisalign.com" in h.what for h in history)


@pytest.mark.parametrize(("url", "message"), [
    ("https://viewer.unlisted.example/case/1", "not on your clinic's list"),
    ("http://clincheck.invisalign.com/share/1", "Only https"),
    ("javascript:alert(1)", "refused"),
])
def test_unlisted_http_and_script_links_are_refused_and_nothing_is_stored(services, infra, world, url,
                                                                           message) -> None:
    world, sim = world
    with pytest.raises(ValidationError, match=message):
        services.viewers.set_link(world.actor(), sim.id, url)
    assert infra.db.viewer_links.count_documents({}) == 0
    assert services.viewers.embed(world.actor(), sim.id) is None
    assert infra.db.audit_events.count_documents({"action": "viewer_link.refused", "outcome": "refused"}) == 1


def test_removing_the_host_stops_the_embed_with_a_clear_reason(services, world) -> None:
    world, sim = world
    services.viewers.set_link(world.actor(), sim.id, SHARE)
    admin = world.actor(Role.ADMIN)
    services.viewers.remove_host(admin, services.viewers.hosts(admin)[0].id)
    embed = services.viewers.embed(world.actor(), sim.id)
    assert embed is not None and embed.html is None and "no longer on your clinic's allow-list" in embed.refused


def test_roles_links_need_capture_hosts_need_admin_presenters_see_approved_only(services, infra, world) -> None:
    world, sim = world
    with pytest.raises(PermissionDeniedError):
        services.viewers.set_link(world.actor(Role.PRESENTER), sim.id, SHARE)
    with pytest.raises(PermissionDeniedError):
        services.viewers.add_host(world.actor(Role.COORDINATOR), "portal.3shape.com")
    services.viewers.set_link(world.actor(), sim.id, SHARE)
    with pytest.raises(NotFoundError):  # presenters never see unapproved versions, nor their links
        services.viewers.embed(world.actor(Role.PRESENTER), sim.id)
    services.review.approve(world.actor(Role.DOCTOR), sim.id)
    embed = services.viewers.embed(world.actor(Role.PRESENTER), sim.id)
    assert embed is not None and embed.html is not None


def test_links_and_hosts_are_scoped_to_the_clinic(services, infra, world) -> None:
    world, sim = world
    other = make_clinic(infra, "beta", chart="C-2")
    with pytest.raises(NotFoundError):
        services.viewers.set_link(other.actor(), sim.id, SHARE)
    assert services.viewers.hosts(other.actor(Role.ADMIN)) == []
