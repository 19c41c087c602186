"""The one server: the Streamlit UI (app.py) and the app's own HTTP routes, on one port.

`streamlit run server.py` finds the `st.App` below and serves both; `make run` does that.
"""

import streamlit as st
from starlette.middleware import Middleware

from web.auth import ROUTES, MediaGuard

app = st.App("app.py", routes=ROUTES, middleware=[Middleware(MediaGuard)])
