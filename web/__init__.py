"""HTTP routes served next to the Streamlit UI on the same server (see server.py): sign-in sessions,
file downloads. As thin as pages/: parse the request, call a core service, build the response."""
