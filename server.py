"""The one server: the Streamlit UI (app.py), the app's own HTTP routes and the HTTP API, on one port.

`streamlit run server.py` finds the `st.App` below and serves all three; `make run` does that. The API
(FastAPI, api/app.py) is mounted under `/api`; its OpenAPI document is `/api/openapi.json`.
"""

import streamlit as st
from starlette.middleware import Middleware
from starlette.routing import Mount
from streamlit.runtime.pages_manager import PagesManager

from api.app import ApiPathGuard, create_api
from web.auth import ROUTES, MediaGuard
from web.runtime import services

# app.py's st.navigation decides which pages exist and who may open them. Streamlit would otherwise treat
# `pages/` as an old-style page folder until some session has run app.py, so the first request after a
# start that asks for a page's address (a reload, a shared link) would run that page without the
# sign-in gate and navigation. (A flag Streamlit keeps for the old behaviour; st.navigation clears it too.)
PagesManager.uses_pages_directory = False

app = st.App("app.py", routes=[*ROUTES, Mount("/api", app=create_api(services))],
             middleware=[Middleware(MediaGuard), Middleware(ApiPathGuard)])
