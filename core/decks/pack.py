"""Consult pack: one ZIP with the generated deck files and an `index.txt` listing them with hashes.

index.txt is UTF-8: the caller's `index_lines` (what the pack is, for whom, when), a blank line,
"Files:", then one line per file in pack order::

    consult.pptx  1234567 bytes  SHA-256 9f86d081884c7d65...

Already-compressed files (PowerPoint/ZIP, PDF, MP4/WebM, PNG/JPEG, GIF) are stored: deflating them
again costs CPU for ~0 % gain. index.txt is deflated. Files are streamed into the archive and hashed
on the way (never read whole into memory); entry timestamps are fixed (1980-01-01) so the same files
give the same archive bytes, and the archive carries no comments. The archive keeps only the given
generated names, never the source paths (which may contain patient names).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from pathlib import Path

from core.decks.model import check_line
from core.errors import ValidationError
from core.rendering.archive import _NAME, _info

INDEX_NAME = "index.txt"
MAX_INDEX_LINES = 100
_STORED_SUFFIXES = (".pptx", ".zip", ".pdf", ".mp4", ".webm", ".png", ".jpg", ".jpeg", ".gif")
_CHUNK = 1024 * 1024


def _check_files(files: Sequence[tuple[str, Path]]) -> list[tuple[str, Path]]:
    if isinstance(files, str | bytes) or not isinstance(files, Sequence) or not files:
        raise ValidationError("A consult pack needs at least one (file name, path) pair.")
    checked: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for index, item in enumerate(files, 1):
        if not isinstance(item, tuple | list) or len(item) != 2 or not isinstance(item[1], str | Path):
            raise ValidationError(f"Item {index} of the pack must be a (file name, path) pair.")
        name, path = item[0], Path(item[1])
        # Generated names only: no folders, no "..", nothing an unzip tool could write outside its target.
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise ValidationError(f"File name {name!r} is not allowed in the pack; use letters, digits, '.', '_' and "
                                  "'-' only (e.g. \"consult-deck.pptx\"), without folders.")
        if name.lower() == INDEX_NAME or name.lower() in seen:
            raise ValidationError(f"File name {name!r} appears twice (or clashes with {INDEX_NAME}); names must be "
                                  "unique.")
        if not path.is_file():
            raise ValidationError(f"The file for {name} does not exist; build it before packing.")
        seen.add(name.lower())
        checked.append((name, path))
    return checked


def _check_index(index_lines: Sequence[str]) -> list[str]:
    if isinstance(index_lines, str) or not isinstance(index_lines, Sequence):
        raise ValidationError("index_lines must be a list of text lines.")
    if len(index_lines) > MAX_INDEX_LINES:
        raise ValidationError(f"index.txt takes at most {MAX_INDEX_LINES} lines; got {len(index_lines)}.")
    return [check_line(f"Index line {number}", line) for number, line in enumerate(index_lines, 1)]


def _add_file(archive: zipfile.ZipFile, name: str, path: Path) -> tuple[int, str]:
    """Stream `path` into `archive` as `name`; returns (size, sha256 hex)."""
    stored = name.lower().endswith(_STORED_SUFFIXES)
    info = _info(name, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    info.file_size = path.stat().st_size  # lets zipfile pick ZIP64 up front for files over 2 GB
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as source, archive.open(info, "w") as target:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            target.write(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def index_text(index_lines: Sequence[str], entries: Sequence[tuple[str, int, str]]) -> str:
    """The text of index.txt for (name, size, sha256) `entries` (see the module docstring)."""
    rows = [*index_lines, "", "Files:"] if index_lines else ["Files:"]
    rows += [f"{name}  {size} bytes  SHA-256 {digest}" for name, size, digest in entries]
    return "\n".join(rows) + "\n"


def build_pack(files: Sequence[tuple[str, Path]], index_lines: Sequence[str], out_path: Path) -> int:
    """Write a ZIP of `files` ((name in the pack, source path) pairs) plus index.txt; returns its size.

    Raises ValidationError for a missing file, an unsafe or duplicate name, or bad index lines;
    the partial archive is deleted on any failure.
    """
    checked = _check_files(files)
    lines = _check_index(index_lines)
    out_path = Path(out_path)
    try:
        with zipfile.ZipFile(out_path, "w", allowZip64=True) as archive:
            entries = [(name, *_add_file(archive, name, path)) for name, path in checked]
            archive.writestr(_info(INDEX_NAME, zipfile.ZIP_DEFLATED), index_text(lines, entries).encode("utf-8"))
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return out_path.stat().st_size
