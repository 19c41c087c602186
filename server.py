"""The one server: the Streamlit UI (app.py) and the app's own HTTP routes, on one port.

`streamlit run server.py` finds the `st.App` below and serves both; `make run` does that.
"""

import streamlit as st
from starlette.middleware import Middleware
from streamlit.runtime.pages_manager import PagesManager

from web.auth import ROUTES, MediaGuard

# app.py's st.navigation decides which pages exist and who may open them. Streamlit would otherwise treat
# `pages/` as an old-style page folder until some session has run app.py, so the first request after a
# start that asks for a page's address (a reload, a shared link) would run that page without the
# sign-in gate and navigation. (A flag Streamlit keeps for the old behaviour; st.navigation clears it too.)
PagesManager.uses_pages_directory = False

app = st.App("app.py", routes=ROUTES, middleware=[Middleware(MediaGuard)])
