"""Safe reading of uploaded ZIP archives, into memory (`read_zip`) or streamed to disk (`extract_zip`).

Every rule is checked from the central directory before anything is decompressed (entry count,
names, links, encryption, declared sizes and ratios, duplicates), and then again while streaming:
members are read in chunks and reading stops as soon as a size or ratio limit is passed, so a
header that lies about sizes cannot make us decompress more than the limits allow.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.errors import ValidationError
from core.importing.limits import DEFAULT_LIMITS, ImportLimits
from core.importing.sniff import sniff

#: Longest accepted member path (characters).
MAX_NAME_LENGTH = 255
#: Compression ratios are only judged for members (and archives) at least this large: text and
#: blank images legitimately compress far beyond 100:1 when small, and a bomb must be big to hurt.
RATIO_FLOOR_BYTES = 1024 * 1024
#: Members are decompressed in chunks of this size.
CHUNK_BYTES = 1024 * 1024

_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_JUNK_DIRECTORIES = frozenset({"__macosx"})
_DRIVE = re.compile(r"(?:^|/)[A-Za-z]:")
# Bidirectional overrides can disguise an extension ("photo\u202egnp.exe"); they never occur in real exports.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ENCRYPTED_FLAGS = 0x1 | 0x40  # traditional and strong encryption
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError)
_RECREATE = "re-create the ZIP from the original files"

Source = bytes | bytearray | memoryview | Path


@dataclass(frozen=True)
class ZipMember:
    """One file of an archive: its normalised path inside the ZIP (always "/"-separated) and its bytes."""

    name: str
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError("A ZIP member needs a non-empty name.")
        if not isinstance(self.data, bytes):
            raise ValidationError(f"ZIP member data must be bytes, got {type(self.data).__name__}.")


@dataclass(frozen=True)
class ExtractedMember:
    """One file written by `extract_zip`: its path inside the ZIP, where it was written, its size."""

    name: str
    path: Path
    size: int

    def __post_init__(self) -> None:
        if not self.name or self.size < 0:
            raise ValidationError("An extracted member needs a name and a non-negative size.")


def read_zip(
    data_or_path: Source,
    *,
    limits: ImportLimits = DEFAULT_LIMITS,
    allowed: Callable[[str], bool] | None = None,
) -> list[ZipMember]:
    """The files of a ZIP, in the archive's order, with every safety rule enforced.

    Directories and well-known junk (`__MACOSX/`, `.DS_Store`, `Thumbs.db`, `._*`) are skipped, and
    so are members for which `allowed(name)` is False (they are not decompressed). Raises
    ValidationError for a corrupt archive, too many entries, oversized or bomb-like members, unsafe
    or duplicate names, symbolic links, encrypted members and nested ZIPs.
    """
    members: list[ZipMember] = []
    with _open_zip(data_or_path, limits) as (archive, archive_bytes):
        budget = _Budget(limits, archive_bytes)
        for info, name in _plan(archive, limits, allowed, archive_bytes):
            chunks: list[bytes] = []
            _stream(archive, info, name, budget, chunks.append)
            members.append(ZipMember(name=name, data=b"".join(chunks)))
    return members


def extract_zip(
    data_or_path: Source,
    dest: Path,
    *,
    limits: ImportLimits = DEFAULT_LIMITS,
    allowed: Callable[[str], bool] | None = None,
) -> list[ExtractedMember]:
    """Like `read_zip`, but streams each member to a file under `dest` (an existing directory, e.g.
    a fresh temporary one) instead of holding it in memory. Paths mirror the ZIP's folders.

    On any error every file and folder this call created is removed again, then ValidationError is raised.
    """
    root = Path(dest)
    if not root.is_dir():
        raise ValidationError("The extraction folder does not exist; create a temporary folder first.")
    created: list[Path] = []
    extracted: list[ExtractedMember] = []
    try:
        with _open_zip(data_or_path, limits) as (archive, archive_bytes):
            budget = _Budget(limits, archive_bytes)
            for info, name in _plan(archive, limits, allowed, archive_bytes):
                target = _target_path(root, name, created)
                # O_EXCL + O_NOFOLLOW: never overwrite, never write through a link planted in dest.
                try:
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                except OSError as error:
                    raise ValidationError(
                        f"{_shown(name)} from the ZIP could not be written ({_short(error)}); "
                        "extract into an empty folder."
                    ) from error
                created.append(target)
                with os.fdopen(fd, "wb") as out:
                    size = _stream(archive, info, name, budget, out.write)
                extracted.append(ExtractedMember(name=name, path=target, size=size))
    except BaseException:
        for path in reversed(created):
            with suppress(OSError):
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
        raise
    return extracted


def is_junk(name: str) -> bool:
    """True for operating-system litter that zippers add (`__MACOSX/`, `.DS_Store`, `Thumbs.db`, `._*`)."""
    parts = [part for part in name.replace("\\", "/").split("/") if part]
    if not parts:
        return False
    base = parts[-1]
    return (
        any(part.casefold() in _JUNK_DIRECTORIES for part in parts[:-1])
        or base.casefold() in _JUNK_NAMES
        or base.startswith("._")
    )


def check_member_name(raw: str) -> str:
    """The normalised ("a/./b" → "a/b") form of a member path, or ValidationError when it is unsafe:
    empty, too long, absolute, with a drive letter, a backslash, "..", or control characters."""
    shown = _shown(raw)
    if not raw or not raw.strip("/"):
        raise ValidationError("The ZIP contains a file without a name; " + _RECREATE + ".")
    if len(raw) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"The ZIP path {shown} is {len(raw)} characters long; the limit is {MAX_NAME_LENGTH}. "
            "Shorten the folder and file names."
        )
    if any(unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS for char in raw):
        raise ValidationError(
            f"The ZIP path {shown} contains control characters; rename the file and re-create the ZIP."
        )
    if "\\" in raw:
        raise ValidationError(f"The ZIP path {shown} contains a backslash; {_RECREATE} with a standard ZIP tool.")
    if raw.startswith("/") or _DRIVE.search(raw):
        raise ValidationError(f"The ZIP path {shown} is absolute; {_RECREATE} with relative paths.")
    parts = raw.split("/")
    if ".." in parts:
        raise ValidationError(f"The ZIP path {shown} points outside the archive (..); {_RECREATE} with plain paths.")
    normalised = "/".join(part for part in parts if part not in ("", "."))
    if not normalised:
        raise ValidationError("The ZIP contains a file without a name; " + _RECREATE + ".")
    return normalised + ("/" if raw.endswith("/") else "")


# --- opening and planning -------------------------------------------------------------------


@contextmanager
def _open_zip(source: Source, limits: ImportLimits) -> Iterator[tuple[zipfile.ZipFile, int]]:
    fp: BinaryIO
    if isinstance(source, bytes | bytearray | memoryview):
        fp = io.BytesIO(bytes(source))
    elif isinstance(source, Path):
        try:
            fp = source.open("rb")
        except OSError as error:
            raise ValidationError("The uploaded ZIP could not be opened; upload it again.") from error
    else:
        raise ValidationError(f"read_zip takes bytes or a Path, got {type(source).__name__}.")
    try:
        size = fp.seek(0, io.SEEK_END)
        declared = _declared_entry_count(fp, size)
        if declared > limits.max_files:
            raise ValidationError(_too_many(declared, limits))
        try:
            archive = zipfile.ZipFile(fp)
        except _READ_ERRORS as error:
            raise ValidationError(
                f"The file could not be read as a ZIP archive ({_short(error)}); re-create it."
            ) from error
        with archive:
            yield archive, size
    finally:
        fp.close()


def _declared_entry_count(fp: BinaryIO, size: int) -> int:
    """The entry count from the end-of-central-directory record, read before zipfile parses anything."""
    tail_size = min(size, _EOCD.size + 0xFFFF)
    fp.seek(size - tail_size)
    tail = fp.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ValidationError("The file could not be read as a ZIP archive (no central directory); re-create it.")
    record = _EOCD.unpack_from(tail, at)
    count = record[4]
    locator_at = at - _ZIP64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == b"PK\x06\x07":
        zip64_offset = _ZIP64_LOCATOR.unpack_from(tail, locator_at)[2]
        if 0 <= zip64_offset <= size - _ZIP64_EOCD.size:
            fp.seek(zip64_offset)
            zip64 = fp.read(_ZIP64_EOCD.size)
            if zip64[:4] == b"PK\x06\x06":
                count = max(count, _ZIP64_EOCD.unpack(zip64)[7])
    return count


def _plan(
    archive: zipfile.ZipFile,
    limits: ImportLimits,
    allowed: Callable[[str], bool] | None,
    archive_bytes: int,
) -> list[tuple[zipfile.ZipInfo, str]]:
    """Members to read, in archive order, after every check that needs no decompression."""
    infos = archive.infolist()
    if len(infos) > limits.max_files:
        raise ValidationError(_too_many(len(infos), limits))
    plan: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    declared_total = 0
    for info in infos:
        # orig_filename keeps what zipfile would silently cut at a NUL byte.
        name = check_member_name(info.orig_filename)
        if name.endswith("/") or is_junk(name):
            continue
        shown = _shown(name)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValidationError(f"{shown} in the ZIP is a symbolic link; links are not accepted — {_RECREATE}.")
        if info.flag_bits & _ENCRYPTED_FLAGS:
            raise ValidationError(f"{shown} in the ZIP is password-protected; re-create the ZIP without a password.")
        if name in seen:
            raise ValidationError(f"The ZIP holds {shown} more than once; remove the duplicate and re-create the ZIP.")
        seen.add(name)
        if allowed is not None and not allowed(name):
            continue
        if info.file_size > limits.max_entry_bytes:
            raise ValidationError(_entry_too_big(shown, info.file_size, limits))
        _check_ratio(shown, info.file_size, info.compress_size, limits)
        declared_total += info.file_size
        if declared_total > limits.max_total_bytes:
            raise ValidationError(_total_too_big(limits))
        plan.append((info, name))
    _check_ratio("the ZIP", declared_total, archive_bytes, limits)
    return plan


# --- streaming ------------------------------------------------------------------------------


class _Budget:
    """Bytes decompressed so far across the archive, checked against the total and overall-ratio limits."""

    def __init__(self, limits: ImportLimits, archive_bytes: int) -> None:
        self.limits = limits
        self.archive_bytes = archive_bytes
        self.total = 0

    def spend(self, count: int) -> None:
        self.total += count
        if self.total > self.limits.max_total_bytes:
            raise ValidationError(_total_too_big(self.limits))
        _check_ratio("the ZIP", self.total, self.archive_bytes, self.limits)


def _stream(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    budget: _Budget,
    sink: Callable[[bytes], object],
) -> int:
    """Decompress one member chunk by chunk into `sink`, enforcing every limit as bytes arrive."""
    shown = _shown(name)
    limits = budget.limits
    size = 0
    head = b""
    try:
        with archive.open(info) as stream:
            for chunk in read_limited(stream, limits.max_entry_bytes, CHUNK_BYTES):
                size += len(chunk)
                if size > limits.max_entry_bytes:
                    raise ValidationError(_entry_too_big(shown, size, limits, at_least=True))
                _check_ratio(shown, size, info.compress_size, limits)
                budget.spend(len(chunk))
                if len(head) < 8:
                    head += chunk[:8]
                    _refuse_nested(shown, head)
                sink(chunk)
    except _READ_ERRORS as error:
        raise ValidationError(
            f"{shown} in the ZIP could not be decompressed ({_short(error)}); {_RECREATE}."
        ) from error
    return size


def read_limited(stream: BinaryIO, limit: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Chunks of `stream` until EOF or until more than `limit` bytes were produced (the chunk that
    passes the limit is still yielded, so the caller sees the overflow and can refuse it)."""
    produced = 0
    while produced <= limit:
        chunk = stream.read(min(chunk_bytes, limit + 1 - produced))
        if not chunk:
            return
        produced += len(chunk)
        yield chunk


def _refuse_nested(shown: str, head: bytes) -> None:
    if len(head) >= 4 and sniff(head) == "zip":
        raise ValidationError(
            f"{shown} in the ZIP is itself a ZIP archive; nested archives are not accepted — "
            "unpack it and upload its files directly."
        )


def _target_path(root: Path, name: str, created: list[Path]) -> Path:
    folder = root
    for part in name.split("/")[:-1]:
        folder = folder / part
        if not folder.is_dir():
            try:
                folder.mkdir()
            except OSError as error:
                raise ValidationError(
                    f"The ZIP uses {_shown(name)} both as a file and a folder; {_RECREATE}."
                ) from error
            created.append(folder)
    return folder / name.rsplit("/", 1)[-1]


# --- messages -------------------------------------------------------------------------------


def _check_ratio(shown: str, uncompressed: int, compressed: int, limits: ImportLimits) -> None:
    if uncompressed < RATIO_FLOOR_BYTES:
        return
    ratio = uncompressed / max(compressed, 1)
    if ratio > limits.max_compression_ratio:
        subject = "The ZIP" if shown == "the ZIP" else f"{shown} in the ZIP"
        raise ValidationError(
            f"{subject} is compressed {ratio:,.0f}:1, which is typical of a ZIP bomb; the limit is "
            f"{limits.max_compression_ratio:,}:1. {_RECREATE.capitalize()}."
        )


def _too_many(count: int, limits: ImportLimits) -> str:
    return f"The ZIP holds {count:,} files; the limit is {limits.max_files:,}. Split it into smaller ZIPs."


def _entry_too_big(shown: str, size: int, limits: ImportLimits, *, at_least: bool = False) -> str:
    amount = f"more than {format_bytes(limits.max_entry_bytes)}" if at_least else format_bytes(size)
    return (
        f"{shown} in the ZIP is {amount} uncompressed; the limit per file is "
        f"{format_bytes(limits.max_entry_bytes)}. Remove it or export a smaller file."
    )


def _total_too_big(limits: ImportLimits) -> str:
    return (
        f"The ZIP unpacks to more than {format_bytes(limits.max_total_bytes)}; the limit is "
        f"{format_bytes(limits.max_total_bytes)}. Split it into smaller ZIPs."
    )


def format_bytes(count: int) -> str:
    """'512 bytes', '1.5 KiB', '200 MiB', '2 GiB': sizes for messages."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count:,} bytes" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _shown(name: str) -> str:
    """A member name made safe to show: control characters escaped, long names shortened."""
    text = "".join(char if unicodedata.category(char) != "Cc" and char not in _BIDI_CONTROLS else "?" for char in name)
    if len(text) > 80:
        text = text[:38] + "…" + text[-38:]
    return f"'{text}'"


def _short(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if len(text) <= 80 else text[:77] + "…"
