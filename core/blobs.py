"""The one rule for deleting stored files, shared by every clean-up (imports, versions, exports) and `cli gc`.

A stored file (a content-addressed blob) is deleted only when, at the moment of deletion, no record
refers to it — gallery assets, live imports, clinic logos — and no writer stored it within the grace
period (`Settings.blob_grace_seconds`): writers put the bytes first and record them afterwards, and
identical bytes (a thumbnail made by an import and again by the renditions job) share one blob.
Younger unreferenced files are left for a later `gc`; see `AssetStore.delete_unreferenced`.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.infra import Infrastructure


def blob_in_use(infra: Infrastructure, sha256: str) -> bool:
    """Whether any record refers to this blob now."""
    return (infra.assets.sha256_in_use(sha256) or infra.imports.sha256_in_use(sha256)
            or infra.clinics.logo_in_use(sha256))


def release_blobs(infra: Infrastructure, sha256s: Iterable[str], *, grace_seconds: float | None = None) -> int:
    """Delete those of these blobs that nothing refers to and nobody wrote within the grace period.

    Returns how many were deleted; the others stay (in use, or young enough that a writer may be about
    to record them)."""
    grace = infra.settings.blob_grace_seconds if grace_seconds is None else grace_seconds
    removed = 0
    for sha in dict.fromkeys(sha256s):
        removed += infra.store.delete_unreferenced(sha, grace_seconds=grace,
                                                   referenced=lambda sha=sha: blob_in_use(infra, sha))
    return removed


def collect_garbage(infra: Infrastructure, *, older_than_seconds: float, dry_run: bool = False) -> int:
    """Delete every stored blob that nothing refers to, written more than `older_than_seconds` ago (never
    within the grace period). With `dry_run`, count them only."""
    grace = max(older_than_seconds, infra.settings.blob_grace_seconds)
    candidates = list(infra.store.keys_older_than(grace))
    if dry_run:
        return sum(not blob_in_use(infra, sha) for sha in candidates)
    return release_blobs(infra, candidates, grace_seconds=grace)
