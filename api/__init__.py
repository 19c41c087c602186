"""The HTTP API: as thin as pages/ — parse, call a core service, serialise (see api/app.py)."""
