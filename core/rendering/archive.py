"""ZIP of generated frame files plus `manifest.json` (the caller's dict + per-file sha256 and size).

PNG/JPEG are stored (ZIP_STORED): they are already compressed, deflating them again costs CPU for
~0 % gain. Everything else, including the manifest, is deflated. Entry timestamps are fixed
(1980-01-01) so the same input gives the same archive bytes, and entries carry no comments.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

from core.errors import ValidationError

MANIFEST_NAME = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
_STORED_SUFFIXES = (".png", ".jpg", ".jpeg", ".mp4", ".webm", ".gif")
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _check_items(items: Sequence[tuple[str, bytes]]) -> None:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise ValidationError("items must be a list of (file name, bytes) pairs.")
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ValidationError(f"Item {index + 1} must be a (file name, bytes) pair.")
        name, data = item
        # Generated names only: no folders, no "..", nothing a zip tool could write outside its target.
        if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
            raise ValidationError(f"File name {name!r} is not allowed in the archive; use letters, digits, '.', '_' "
                                  "and '-' only (e.g. \"stage-01.png\"), without folders.")
        if name.lower() == MANIFEST_NAME or name.lower() in seen:
            raise ValidationError(f"File name {name!r} appears twice (or clashes with {MANIFEST_NAME}); names must "
                                  "be unique.")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValidationError(f"The content of {name} must be bytes.")
        seen.add(name.lower())


def _info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    return info


def frames_zip(items: Sequence[tuple[str, bytes]], manifest: dict, out_path: Path) -> int:
    """Write `items` and a manifest to a ZIP at `out_path`; returns the bytes written.

    manifest.json = `manifest` plus "files": [{"name", "sha256", "bytes"}] in item order (a
    "files" key in `manifest` is rejected rather than overwritten). `manifest` must be
    JSON-serialisable. On any error the partial archive is deleted.
    """
    _check_items(items)
    if not isinstance(manifest, dict) or "files" in manifest:
        raise ValidationError("manifest must be a dict without a \"files\" key (the archive adds that).")
    files = [{"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in items]
    try:
        manifest_json = json.dumps({**manifest, "files": files}, indent=2, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise ValidationError(f"The manifest cannot be written as JSON: {error}.") from error
    out_path = Path(out_path)
    try:
        with zipfile.ZipFile(out_path, "w", allowZip64=True) as archive:
            for name, data in items:
                stored = name.lower().endswith(_STORED_SUFFIXES)
                archive.writestr(_info(name, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED), bytes(data))
            archive.writestr(_info(MANIFEST_NAME, zipfile.ZIP_DEFLATED), manifest_json.encode("utf-8"))
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    return out_path.stat().st_size
