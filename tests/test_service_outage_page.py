"""The UI while the database is away (the launcher restarting it): a short message, not a traceback."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.config import PROJECT_ROOT
from core.launcher import free_port


def test_the_sign_in_page_says_the_database_is_restarting_instead_of_failing(app_env, monkeypatch):
    import streamlit as st

    dead = free_port()  # nothing listens here: the database is down (e.g. being restarted)
    monkeypatch.setenv("MONGODB_URI", f"mongodb://127.0.0.1:{dead}/?directConnection=true")
    st.cache_resource.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("database is restarting or unreachable" in e.value for e in at.error)
    assert not at.selectbox  # no sign-in form from data it could not read
