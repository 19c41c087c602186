"""Untrusted text shown safely: terminal escapes (core.text) and Markdown escaping (ui.text)."""

from __future__ import annotations

import pytest
from markdown_it import MarkdownIt

from core.text import printable
from ui.text import md


@pytest.mark.parametrize(("text", "shown"), [
    ("Stage 1.png", "Stage 1.png"),
    ("Zähne · café 😀", "Zähne · café 😀"),
    ("a\x1b[31mb", "a\\x1b[31mb"),
    ("photo\u202egnp.exe", "photo\\u202egnp.exe"),
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("line\nbreak\ttab\r", "line\\x0abreak\\x09tab\\x0d"),
    ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"),
    ("sep\u2028arator", "sep\\u2028arator"),
])  # fmt: skip
def test_printable_shows_hidden_characters_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown


@pytest.mark.parametrize("text", [
    "**bold** __also__ *it* _it_",
    "[link](https://evil.example) <https://evil.example> ![img](x.png)",
    "# heading",
    "- item",
    "1. item",
    "> quote",
    "`code` ~~strike~~",
    "a | b\n--|--",
    "&lt;b&gt; <b>html</b>",
    ":red[colour] :material/home: :smile: $x^2$",
    "back\\slash",
])  # fmt: skip
def test_md_renders_literally(text: str) -> None:
    html = MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(md(text))
    inner = html.removeprefix("<p>").removesuffix("</p>\n")
    assert inner == printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
        '"', "&quot;")
