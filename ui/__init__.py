"""Streamlit-only helpers: cached service wiring, session keys and widget groups."""
