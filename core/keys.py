"""Server-side secrets that sign things: keyed by id, so they can be rotated without breaking old signatures.

A keyring comes from an environment variable / `secrets.toml` key (`AUDIT_KEYS=k2:<hex>,k1:<hex>`, the
first one signs, every one listed still verifies) or, when that is unset, from a file under
`DATA_DIR/keys/` that the first process to need it creates with a random 256-bit key (mode 0600).
Processes on several hosts must share the variable (or `DATA_DIR`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.errors import ConfigurationError

MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class Keyring:
    """Signing keys by id; `current` signs, all of them verify."""

    current: str
    keys: dict[str, bytes]

    def sign(self, message: bytes, key_id: str | None = None) -> str:
        return hmac.new(self.keys[key_id or self.current], message, hashlib.sha256).hexdigest()

    def verify(self, message: bytes, signature: str, key_id: str) -> bool:
        key = self.keys.get(key_id)
        return key is not None and hmac.compare_digest(hmac.new(key, message, hashlib.sha256).hexdigest(), signature)


def parse_keyring(text: str, *, source: str) -> Keyring:
    """`id:hex[,id:hex...]` → a keyring whose first key is current."""
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part or part.startswith("#"):
            continue
        key_id, sep, hex_key = part.partition(":")
        try:
            key = bytes.fromhex(hex_key.strip())
        except ValueError:
            key = b""
        if not sep or not key_id.strip() or len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(f"{source}: each key must look like 'key-id:<{MIN_KEY_BYTES * 2} or more hex "
                                     "digits>' (generate one with `python -c 'import secrets; "
                                     "print(secrets.token_hex(32))'`).")
        keys.setdefault(key_id.strip(), key)
    if not keys:
        raise ConfigurationError(f"{source} holds no key.")
    return Keyring(current=next(iter(keys)), keys=keys)


def load_keyring(configured: str | None, key_file: Path, *, variable: str) -> Keyring:
    """The configured keyring, else the one in `key_file` (created on first use)."""
    if configured:
        return parse_keyring(configured, source=variable)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        line = f"local-{datetime.now(UTC):%Y%m%d}:{secrets.token_hex(32)}\n"
        tmp = key_file.with_name(f".{key_file.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, key_file)  # atomic, and never replaces a key another process made first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return parse_keyring(key_file.read_text(), source=str(key_file))
