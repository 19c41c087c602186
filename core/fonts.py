"""The typefaces every output uses, from pinned pip packages (no system fonts, nothing downloaded).

- DejaVu Sans (regular, bold), shipped inside matplotlib's wheel (Bitstream Vera / DejaVu licence):
  Latin with accents, Greek, Cyrillic, dashes and typographic punctuation.
- Noto Sans CJK TC Regular (SIL Open Font License 1.1, from the `cvttf-NotoSansCJK-Regular` wheel):
  the fallback for Chinese, Japanese and Korean characters DejaVu lacks.

PDFs embed (subsets of) both; burned-in captions and video cards draw with them through Pillow.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from core.errors import ConfigurationError


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"The font package {name!r} is not installed; run `make run` (or pip install -r "
                                 "requirements.txt) to install the pinned requirements.")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ConfigurationError(f"Font file {path} is missing; reinstall the pinned requirements.")
    return path


@lru_cache(maxsize=1)
def regular() -> Path:
    return _existing(_package_dir("matplotlib") / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")


@lru_cache(maxsize=1)
def bold() -> Path:
    return _existing(_package_dir("matplotlib") / "mpl-data" / "fonts" / "ttf" / "DejaVuSans-Bold.ttf")


@lru_cache(maxsize=1)
def cjk() -> Path:
    return _existing(_package_dir("cvttf_NotoSansCJK_Regular") / "NotoSansCJKtc-Regular.otf")


@lru_cache(maxsize=4)
def characters(path: Path) -> frozenset[int]:
    """Code points a font has glyphs for."""
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as font:
        return frozenset(font.getBestCmap())


def needs_fallback(text: str) -> bool:
    """Whether `text` has characters the main font lacks (so a PDF embeds the CJK font too)."""
    main = characters(regular())
    return any(ord(ch) not in main for ch in text if not ch.isspace())
