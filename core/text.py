"""Showing untrusted text (file names, manifest fields, patient fields) without it taking control.

`printable` makes invisible and control characters visible as escapes: ESC sequences cannot
recolour or rewrite a terminal, and a right-to-left override cannot make "photo<RLO>gnp.exe" read
as "photoexe.png". The UI's Markdown escaping (`ui.text.md`) builds on it.
"""

from __future__ import annotations

import unicodedata

# Control (C0/C1, DEL), format (bidi overrides and isolates, zero-width characters, BOM), line and
# paragraph separators, surrogates and private use: nothing a name needs, everything a trick does.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


def printable(text: str) -> str:
    """`text` with every control, format or separator character replaced by its Python-style escape
    (ESC → `\\x1b`, RIGHT-TO-LEFT OVERRIDE → `\\u202e`, newline → `\\x0a`); other text unchanged."""
    if text.isprintable():
        return text
    return "".join(_escape(char) if unicodedata.category(char) in _HIDDEN_CATEGORIES else char for char in text)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
