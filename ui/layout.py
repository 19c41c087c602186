"""Layouts that fit phones, tablets and desktops: a little CSS for the viewer and Compare pages, and the
sidebar folded away after navigating on a narrow screen.

Streamlit stacks columns below 640 px; the rules here decide what comes first on a phone (the
picture), keep the player buttons on one row, and let labels wrap instead of being cut off.
Containers are addressed by their `key` (Streamlit gives them the class `st-key-<key>`).
"""

from __future__ import annotations

import streamlit as st

PHONE = 640  # px: where Streamlit stacks columns
NARROW = 768  # px: where the sidebar should fold away after navigating

_CSS = f"""
<style>
/* Labels wrap rather than being clipped ("Stage grid", "Full HD 1920 × 1080", toggles). */
[data-testid="stWidgetLabel"] p, [data-testid="stCheckbox"] label p, [data-testid="stButtonGroup"] button p,
[data-testid="stSelectbox"] div[data-baseweb="select"] div {{
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
}}
[data-testid="stButtonGroup"] > div {{ flex-wrap: wrap; }}
[data-testid="stSelectbox"] div[data-baseweb="select"] > div {{ height: auto; min-height: 2.5rem; }}

/* The player: one compact row of icon buttons at every width. */
.st-key-player [data-testid="stHorizontalBlock"] {{ flex-wrap: nowrap !important; gap: 0.25rem; }}
.st-key-player [data-testid="stColumn"] {{ min-width: 0 !important; width: auto !important; flex: 1 1 0 !important; }}
.st-key-player button {{ padding-left: 0.25rem; padding-right: 0.25rem; min-height: 2.25rem; width: 100%; }}
.st-key-player [data-testid="stSlider"] {{ min-width: 5rem; }}

/* The thumbnail strip: a scrolling row of small pictures, never a stack of full-size ones. */
.st-key-thumb-strip [data-testid="stHorizontalBlock"] {{
  flex-wrap: nowrap !important; overflow-x: auto; gap: 0.25rem;
}}
.st-key-thumb-strip [data-testid="stColumn"] {{ min-width: 3.5rem !important; flex: 1 1 0 !important; }}
.st-key-thumb-strip button {{ padding: 0 0.2rem; min-height: 1.75rem; }}

@media (max-width: {PHONE}px) {{
  .block-container, [data-testid="stMainBlockContainer"] {{ padding: 3.5rem 0.75rem 2rem !important; }}
  h1 {{ font-size: 1.6rem !important; padding: 0 !important; }}
  .st-key-player button p {{ display: none; }}  /* icons only; the button names stay for screen readers */
  .st-key-player [data-testid="stColumn"]:last-child {{ flex: 2 1 0 !important; }}
  /* What the page is for comes first: the picture, then the controls. */
  [data-testid="stColumn"]:has(.st-key-viewer-main) {{ order: -1; }}
  [data-testid="stColumn"]:has(.st-key-cmp-preview) {{ order: -1; }}
  .st-key-frame-picture, [data-testid="stLayoutWrapper"]:has(> .st-key-frame-picture) {{ order: -1; }}
  .st-key-thumb-strip [data-testid="stImage"] {{ display: none; }}
}}
</style>
"""


def responsive() -> None:
    """The CSS above, once per page run (pages that show the viewer or Compare call it)."""
    st.html(_CSS)


def fold_sidebar_after_navigation(url_path: str) -> None:
    """On a narrow screen, close the sidebar when the user has just moved to another page (it would
    otherwise cover the page they asked for). Opening it again is left alone until the next page."""
    previous = st.session_state.get("shown-page")
    st.session_state["shown-page"] = url_path
    if previous is None or previous == url_path:
        return
    script = f"""<script>
    (function () {{
      if (window.innerWidth > {NARROW}) return;
      const bar = document.querySelector('[data-testid="stSidebar"]');
      if (!bar || bar.getAttribute('aria-expanded') !== 'true') return;
      const close = bar.querySelector('[data-testid="stSidebarCollapseButton"] button')
        || document.querySelector('[data-testid="stSidebarCollapseButton"] button');
      if (close) close.click();
    }})();
    </script>"""
    st.html(script, unsafe_allow_javascript=True)
