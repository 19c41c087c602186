"""The one server: the Streamlit UI (app.py), the app's own HTTP routes and the HTTP API, on one port.

`streamlit run server.py` finds the `st.App` below and serves all three; `make run` does that. The API
(FastAPI, api/app.py) is mounted under `/api`; its OpenAPI document is `/api/openapi.json`.
"""

import streamlit as st
from starlette.middleware import Middleware
from starlette.routing import Mount

from api.app import ApiPathGuard, create_api
from web.auth import ROUTES, MediaGuard
from web.runtime import services

app = st.App("app.py", routes=[*ROUTES, Mount("/api", app=create_api(services))],
             middleware=[Middleware(MediaGuard), Middleware(ApiPathGuard)])
