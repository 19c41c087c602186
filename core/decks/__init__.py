"""Consult decks built from approved simulation material (pure, Streamlit-free).

* `model`  — `SlideContent`, `Branding`, `TEMPLATES` (default slide sequences), `DeckResult`.
* `pptx`   — `build_pptx`: 16:9 PowerPoint with full-resolution pictures, embedded MP4 and notes.
* `pdf`    — `build_pdf`: landscape print PDF (images at >= 300 effective DPI) or a notes handout.
* `pack`   — `build_pack`: a ZIP consult pack of generated files plus `index.txt` with hashes.

Builders write straight to the path they are given (callers pass a temporary path and rename it
into place) and never put slide text into document metadata.
"""

from __future__ import annotations

from core.decks.model import DISCLAIMER, SLIDE_KINDS, TEMPLATES, Branding, DeckResult, SlideContent

__all__ = ["DISCLAIMER", "SLIDE_KINDS", "TEMPLATES", "Branding", "DeckResult", "SlideContent"]
