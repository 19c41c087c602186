"""User-supplied text in Streamlit's Markdown (st.markdown, st.caption, st.error, image captions …).

File names, manifest fields, patient and simulation names are data, not formatting: `md` escapes
every character Markdown or Streamlit's extensions (`:red[…]`, `:material/…:`, `$…$`) would act on,
so "**bold** [link](https://x)" shows literally, and control characters and bidi overrides show as
escapes (`core.text.printable`). Use it for every interpolated value; never for our own markup.
"""

from __future__ import annotations

import string

from core.text import printable

# ASCII punctuation CommonMark may treat as markup (any of it can be backslash-escaped) and the
# characters of Streamlit's directives; left alone: , ; ? % / ' " which never start markup.
_SPECIAL = frozenset(string.punctuation) - frozenset(",;?%/'\"")


def md(value: object) -> str:
    """`value` as text that renders literally inside Markdown."""
    return "".join(f"\\{char}" if char in _SPECIAL else char for char in printable(str(value)))
