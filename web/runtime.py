"""The route handlers' services: one set per server process, built on first use."""

from __future__ import annotations

import threading

from core.config import load_settings
from core.services import Services, build_services

_lock = threading.Lock()
_services: Services | None = None


def services() -> Services:
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = build_services(load_settings())
    return _services
