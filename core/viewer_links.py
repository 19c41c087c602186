"""Vendor web-viewer links (ClinCheck share links, 3Shape and iTero viewers): strict parsing, the clinic
allow-list match, and the sandboxed iframe that embeds an allowed link.

Only `https` URLs whose host is on the clinic's allow-list are embedded. Everything that could make a
link point somewhere else than it seems is refused rather than repaired: other schemes
(`javascript:`, `data:`, `http:` ...), user names or passwords before the host
(`https://trusted.example@evil.example`), backslashes, control characters and spaces, IP addresses,
non-standard ports and percent-encoded host names. Hosts are compared in their IDNA (punycode) form,
so a look-alike Unicode host never matches an ASCII allow-list entry. Allow-list entries are exact
hosts, or `*.domain` for the subdomains of a domain (not the domain itself).
"""

from __future__ import annotations

import html
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, urlsplit, urlunsplit

from core.errors import ValidationError

MAX_URL_LENGTH: Final = 2048
#: The embedded viewer may run its own scripts in its own origin, and nothing else: no top-level
#: navigation, pop-ups, forms, downloads or modal dialogs.
SANDBOX: Final = "allow-scripts allow-same-origin"
REFERRER_POLICY: Final = "no-referrer"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_URL_SAFE = "/%:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class ViewerUrl:
    """A link that passed every check: `url` re-serialised (safe to put in an HTML attribute), `host` in
    lower-case ASCII (IDNA) form."""

    url: str
    host: str


def parse_viewer_url(text: str) -> ViewerUrl:
    """Check a pasted viewer link; ValidationError says what is wrong and what to paste instead."""
    raw = (text or "").strip()
    if not raw:
        raise ValidationError("Paste the viewer's link; it starts with https://.")
    if len(raw) > MAX_URL_LENGTH:
        raise ValidationError(f"The link is {len(raw):,} characters long; viewer links have at most "
                              f"{MAX_URL_LENGTH:,}.")
    scheme = _SCHEME.match(raw)
    if scheme is None:
        raise ValidationError("The link must start with https:// (copy the whole address from the viewer).")
    name = scheme.group(1).lower()
    if name == "http":
        raise ValidationError("Only https links can be embedded: an http page travels unencrypted. "
                              "Use the viewer's https:// link.")
    if name != "https":
        raise ValidationError(f"“{name}:” links are refused: only https links to a web viewer can be embedded.")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch in '\\"<>`{}|^' for ch in raw):
        raise ValidationError("The link contains spaces, quotes, backslashes or control characters, which a web "
                              "viewer's address never has; copy it again from the viewer.")
    if not raw[len(scheme.group(0)):].startswith("//"):
        raise ValidationError("The link must start with https:// followed by the viewer's host.")
    parts = urlsplit(raw)
    if "@" in parts.netloc:
        raise ValidationError("The link has a user name or password before the host (“…@host”), which can "
                              "disguise where it really goes; links like that are refused.")
    try:
        port = parts.port
    except ValueError:
        raise ValidationError("The link's port is not a number; copy the link again from the viewer.") from None
    if port not in (None, 443):
        raise ValidationError(f"The link uses port {port}; only the standard https port can be embedded.")
    host = _ascii_host(parts.hostname or "", what="link")
    path = quote(parts.path or "/", safe=_URL_SAFE)
    query = quote(parts.query, safe=_URL_SAFE + "?")
    fragment = quote(parts.fragment, safe=_URL_SAFE + "?#")
    return ViewerUrl(urlunsplit(("https", host, path, query, fragment)), host)


def _ascii_host(host: str, *, what: str) -> str:
    host = host.strip().lower().rstrip(".")
    if not host:
        raise ValidationError(f"The {what} has no host name.")
    if host.startswith("[") or _is_ip(host):
        raise ValidationError(f"The {what} points at an IP address; only named hosts (like viewer.example.com) "
                              "can be allowed and embedded.")
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationError(f"The {what}'s host name {host!r} is not valid.") from None
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValidationError(f"The {what}'s host name {host!r} is not a valid internet host name.")
    return ascii_host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(re.fullmatch(r"[0-9.]+|0x[0-9a-f.x]+", host))  # short or hex forms browsers accept as IPs
    return True


def normalise_host_pattern(text: str) -> str:
    """An allow-list entry from what an admin typed: a host, `*.domain`, or a pasted https link (its host)."""
    raw = (text or "").strip()
    if not raw:
        raise ValidationError("Type the viewer's host name, e.g. clincheck.invisalign.com, or *.invisalign.com.")
    if "://" in raw:
        return parse_viewer_url(raw).host
    if any(ch in raw for ch in "/@:\\ ") or any(ord(ch) < 0x21 for ch in raw):
        raise ValidationError("Type only the host name (like viewer.example.com), without https://, a path or a port.")
    if raw.startswith("*."):
        if "." not in raw[2:].strip("."):
            raise ValidationError("A wildcard must name a whole domain (like *.invisalign.com), not a "
                                  "top-level domain.")
        return f"*.{_ascii_host(raw[2:], what='allow-list entry')}"
    if "*" in raw:
        raise ValidationError("A wildcard can only stand for the subdomains of a domain: *.example.com.")
    return _ascii_host(raw, what="allow-list entry")


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether `host` (ASCII form) matches an allow-list entry: exactly, or as a subdomain of a `*.` entry."""
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith("." + pattern[2:]):
                return True
        elif host == pattern:
            return True
    return False


def embed_html(viewer: ViewerUrl, *, title: str = "Vendor web viewer") -> str:
    """A minimal page holding the viewer in a sandboxed, no-referrer iframe (for a srcdoc frame)."""
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">"
            "<style>html,body{margin:0;height:100%;background:#0f172a}"
            "iframe{display:block;border:0;width:100%;height:100%}</style></head><body>"
            f"<iframe src=\"{html.escape(viewer.url, quote=True)}\" sandbox=\"{SANDBOX}\" "
            f"referrerpolicy=\"{REFERRER_POLICY}\" allow=\"fullscreen\" loading=\"lazy\" "
            f"title=\"{html.escape(title, quote=True)}\"></iframe></body></html>")
