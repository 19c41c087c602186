"""Shared plumbing for repositories: ids, clinic-scoped filters, and bounded keyset pages.

This module is the one place that knows which query shapes the database serves from an index. The
embedded server (SecantusDB) routes a query by the shape of its filter (see shared/SECANTUS.md):

- a filter with `_id` must name `_id` first (it looks up the first clause when no index covers all);
- an all-equality filter must equal an index's leading fields, plus at most one range (`$gte/$lt/$in`)
  on the index's next key; anything else goes into a second `$match` stage (`post`), which is applied
  to the documents the first one found;
- `limit`, `find_one` and index-ordered sorts never stop early, so "newest N" and every page of a list
  read a window bounded on both sides of an indexed key, grown or shrunk by what earlier windows held.

Every shape here is also plain, idiomatic pymongo that MongoDB serves from the same indexes.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import IndexModel
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from core.errors import ConflictError, NotFoundError, ValidationError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: No record of this product is older; the lower bound of every backwards walk through time.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
#: Tolerated clock skew between app/worker hosts: the upper bound of a walk starts this far ahead.
CLOCK_SKEW = timedelta(days=1)
#: Page sizes a caller may ask for.
MAX_PAGE = 1000


def sync_indexes(collection: Collection, models: Sequence[IndexModel], *, obsolete: Sequence[str] = (),
                 before_build: Mapping[str, Callable[[Database], Any]] | None = None) -> list[str]:
    """Make the collection's indexes what the repository declares; returns the names (re)built.

    `before_build[name](db)` runs just before that index is built (e.g. to resolve duplicates an
    older release could write, before a unique index forbids them).

    Existing indexes with the same name and options cost one `listIndexes` (no rebuild), so start-up
    stays fast on a large database. An index whose options changed is dropped and rebuilt, and indexes
    named in `obsolete` are dropped. Building an index reads the whole collection: the time is logged.
    """
    existing = collection.index_information()
    for name in obsolete:
        if name in existing:
            log.info("dropping obsolete index %s.%s", collection.name, name)
            collection.drop_index(name)
    build: list[IndexModel] = []
    for model in models:
        wanted = model.document
        have = existing.get(wanted["name"])
        if have is not None and _same_index(have, wanted):
            continue
        if have is not None:
            log.info("index %s.%s changed; rebuilding it", collection.name, wanted["name"])
            collection.drop_index(wanted["name"])
        build.append(model)
    if build:
        for model in build:
            prepare = (before_build or {}).get(model.document["name"])
            if prepare is not None:
                prepare(collection.database)
        started = time.monotonic()
        collection.create_indexes(build)
        log.info("built %d index(es) on %s in %.1f s", len(build), collection.name, time.monotonic() - started)
    return [m.document["name"] for m in build]


def _same_index(have: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    def keys(spec: Any) -> list[tuple[str, int]]:
        items = spec.items() if isinstance(spec, Mapping) else spec
        return [(str(k), int(v)) for k, v in items]

    return (keys(have["key"]) == keys(wanted["key"])
            and bool(have.get("unique")) == bool(wanted.get("unique"))
            and have.get("partialFilterExpression") == wanted.get("partialFilterExpression"))


def utcnow() -> datetime:
    """Now in UTC, truncated to milliseconds (what BSON datetimes keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def to_oid(value: str | ObjectId, what: str = "record") -> ObjectId:
    """Turn an id from the outside into an ObjectId; a malformed id is simply not found."""
    if isinstance(value, ObjectId):
        return value
    try:
        return ObjectId(str(value))
    except (InvalidId, TypeError) as exc:
        raise NotFoundError(f"No {what} with that id.") from exc


def opt_oid(value: str | ObjectId | None) -> ObjectId | None:
    return None if value in (None, "") else to_oid(value)


def opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


# --- pages -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the opaque cursor of the next page (None: this is the last page)."""

    items: tuple[T, ...]
    cursor: str | None = None
    #: More items match than shown, but there is no cursor to them (e.g. a search: refine it instead).
    truncated: bool = False

    @property
    def more(self) -> bool:
        return self.cursor is not None or self.truncated

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T:
        return self.items[index]

    def __bool__(self) -> bool:
        return bool(self.items)


def encode_cursor(value: datetime | int | str, oid: ObjectId) -> str:
    """An opaque, URL-safe cursor: the sort value and `_id` of the last item a page showed."""
    if isinstance(value, datetime):
        tagged: list[Any] = ["d", int(value.timestamp() * 1000)]
    elif isinstance(value, int):
        tagged = ["i", value]
    else:
        tagged = ["s", str(value)]
    raw = json.dumps([*tagged, str(oid)], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime | int | str, ObjectId]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, oid = json.loads(raw)
        if kind == "d":
            return datetime.fromtimestamp(int(value) / 1000, UTC), ObjectId(oid)
        if kind == "i":
            return int(value), ObjectId(oid)
        if kind == "s":
            return str(value), ObjectId(oid)
    except (ValueError, TypeError, InvalidId, UnicodeDecodeError):
        pass
    raise ValidationError("That page link is not valid (or out of date); start again from the first page.")


def check_limit(limit: int) -> int:
    if not 1 <= int(limit) <= MAX_PAGE:
        raise ValidationError(f"Ask for 1 to {MAX_PAGE} items per page (not {limit}).")
    return int(limit)


def next_grid(edge: str, depth: int) -> str | None:
    """The smallest `depth`-letter string (a–z) after `edge`; None when there is none.

    String walks step between these grid points: a window [edge, next_grid(edge, 2)) holds the names
    from "sm…" to "sn", whatever characters they contain (accents and punctuation sort in between).
    """
    for common in range(min(len(edge), depth), -1, -1):
        if any(not "a" <= ch <= "z" for ch in edge[:common]):
            continue
        if common == len(edge):
            if common < depth:
                return edge + "a" * (depth - common)
            continue
        if common == depth:
            continue
        char = edge[common]
        bigger = "a" if char < "a" else chr(ord(char) + 1) if char < "z" else None
        if bigger:
            return edge[:common] + bigger + "a" * (depth - common - 1)
    return None


#: The upper bound of string walks: greater than any name.
STRING_END = "\U0010ffff"


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix`."""
    while prefix and ord(prefix[-1]) >= 0x10FFFF:
        prefix = prefix[:-1]
    return prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else STRING_END


@dataclass
class _Walk:
    """Successive windows of one indexed key, from a start towards a stop, sized by what they held.

    A window that held nothing doubles the next one; one that held something is sized so the next holds
    about what is still missing (at most four times larger, never below a quarter). Strings walk
    between grid points of `depth` letters (fewer letters: wider windows; see `next_grid`).
    """

    start: Any
    stop: Any
    descending: bool
    span: Any
    depth: int = 2
    #: Where the first window of a descending walk ends (below `start - span` when given): lets the first
    #: window take in the clock-skew allowance and what is newer than the previous page's first row,
    #: without that always-empty stretch doubling the windows that follow.
    first_low: Any = None

    def windows(self) -> Generator[tuple[Any, Any], tuple[int, int], None]:
        """Yield (low, high) bounds; send back (documents found in it, documents still missing)."""
        if isinstance(self.start, str):
            yield from self._string_windows()
            return
        edge, first = self.start, True
        # Descending walks include `stop` (and the first window includes `start`); ascending ones end before it.
        while (edge > self.stop or (first and edge == self.stop)) if self.descending else (edge < self.stop):
            if self.descending:
                low = edge - self.span
                if first and self.first_low is not None:
                    low = min(low, self.first_low)
                low, high = max(low, self.stop), edge
                edge = low
            else:
                low, high = edge, min(edge + self.span, self.stop)
                edge = high
            first = False
            found, missing = yield (low, high)
            self._resize(found, missing)

    def _resize(self, found: int, missing: int) -> None:
        if found <= 0:  # doubling (not more) so a quiet stretch is not followed by a window over a busy one
            self.span = self.span * 2
            return
        wanted = self.span * (missing * 1.25 / found)
        smallest, largest = self.span / 4, self.span * 4
        if isinstance(self.span, int):
            wanted, smallest, largest = int(wanted) + 1, max(1, self.span // 4), self.span * 4
        self.span = min(max(wanted, smallest), largest)

    def _string_windows(self) -> Generator[tuple[str, str], tuple[int, int], None]:
        edge, stop, empty_in_a_row = self.start, self.stop, 0
        while edge < stop:
            grid = next_grid(edge, self.depth) if self.depth > 0 else None
            high = min(grid, stop) if grid is not None else stop
            found, missing = yield (edge, high)
            empty_in_a_row = empty_in_a_row + 1 if found == 0 else 0
            if found == 0 and empty_in_a_row >= (6 if self.depth > 1 else 3):
                self.depth, empty_in_a_row = self.depth - 1, 0
            elif found > 4 * max(missing, 1) and self.depth < 8:
                self.depth += 1
            edge = high


@dataclass(frozen=True)
class _Hint:
    span: timedelta  #: windows this wide hold about a page, at the list's usual spacing of rows
    floor: datetime | None  #: the last row of the last first page (newest-first lists)


class _WalkHints:
    """What the last page of each list learned about where its rows are (per process, bounded).

    Only a starting guess: walks stay contiguous and go on until the page is full, so a stale hint
    costs a window more or less, never a missing row. A "newest first" list's first window then reaches
    from now down to the last row its previous first page showed — what arrived since, plus that page —
    instead of crossing a quiet stretch with doubling windows that land on thousands of rows; later
    windows are sized by the usual spacing of the list's rows (the median gap, so one pause does not
    widen them).
    """

    def __init__(self, size: int = 4096) -> None:
        self._hints: OrderedDict[tuple, _Hint] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple) -> _Hint | None:
        with self._lock:
            hint = self._hints.get(key)
            if hint is not None:
                self._hints.move_to_end(key)
            return hint

    def put(self, key: tuple, hint: _Hint) -> None:
        with self._lock:
            self._hints[key] = hint
            self._hints.move_to_end(key)
            while len(self._hints) > self._size:
                self._hints.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._hints.clear()


WALK_HINTS = _WalkHints()
#: The narrowest window a hint may ask for.
_MIN_HINT_SPAN = timedelta(seconds=1)


class Repository:
    """One repository per collection. Every query is scoped by the caller's clinic id."""

    collection_name: ClassVar[str]
    what: ClassVar[str] = "record"

    def __init__(self, db: Database) -> None:
        self._db = db
        self._col: Collection = db[self.collection_name]

    @classmethod
    def ensure_indexes(cls, db: Database) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- filters -------------------------------------------------------------------------------------
    def _scope(self, clinic_id: str, **filters: Any) -> dict[str, Any]:
        """A clinic-scoped filter in the shape the database serves from an index.

        `_id` (a value or `{"$in": [...]}`) goes first: SecantusDB looks it up directly, while
        `{"clinicId": c, "_id": x}` would read the whole clinic. The clinic id then guards the scope.
        """
        scope = to_oid(clinic_id, "clinic")
        if "_id" in filters:
            oid = filters.pop("_id")
            return {"_id": oid, "clinicId": scope, **filters}
        return {"clinicId": scope, **filters}

    def _find_one(self, clinic_id: str, record_id: str, *, projection: Mapping[str, Any] | None = None,
                  session: ClientSession | None = None) -> dict[str, Any]:
        doc = self._col.find_one(self._scope(clinic_id, _id=to_oid(record_id, self.what)), projection,
                                 session=session)
        if doc is None:
            raise NotFoundError(f"No {self.what} with that id in your clinic.")
        return doc

    def _by_ids(self, clinic_id: str, ids: Sequence[str | ObjectId], *,
                projection: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Documents of the clinic with these ids, in one indexed query (missing ones are left out)."""
        oids = list(dict.fromkeys(to_oid(i, self.what) for i in ids))
        if not oids:
            return []
        return list(self._col.find(self._scope(clinic_id, _id={"$in": oids}), projection))

    def _update_by_id(self, clinic_id: str, record_id: str, update: Mapping[str, Any], *,
                      guard: Mapping[str, Any] | None = None, session: ClientSession | None = None,
                      projection: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Update one record if it still matches `guard`; the document after the update, or None.

        Not `find_one_and_update`: SecantusDB runs its write step as a scan (SECANTUS.md rule 8).
        The guarded `update_one` is the atomic compare-and-set; the read after it returns the record
        as stored (a later writer's change may already be visible, never an earlier state).
        """
        query = self._scope(clinic_id, _id=to_oid(record_id, self.what), **dict(guard or {}))
        result = self._col.update_one(query, update, session=session)
        if result.matched_count == 0:
            return None
        return self._col.find_one({"_id": query["_id"]}, projection, session=session)

    # --- reads ---------------------------------------------------------------------------------------
    def _select(self, match: Mapping[str, Any], *, post: Mapping[str, Any] | None = None,
                projection: Mapping[str, Any] | None = None, sort: Sequence[tuple[str, int]] | None = None,
                session: ClientSession | None = None) -> list[dict[str, Any]]:
        """Documents matching `match` (served by an index) and then `post` (applied to what it found)."""
        if not post:
            cursor = self._col.find(match, projection, session=session)
            if sort:
                cursor = cursor.sort(list(sort))
            return list(cursor)
        pipeline: list[dict[str, Any]] = [{"$match": dict(match)}, {"$match": dict(post)}]
        if sort:
            pipeline.append({"$sort": dict(sort)})
        if projection:
            pipeline.append({"$project": dict(projection)})
        return list(self._col.aggregate(pipeline, session=session))

    def _page(self, match: Mapping[str, Any], field: str, *, limit: int, cursor: str | None = None,
              descending: bool = True, post: Mapping[str, Any] | None = None,
              projection: Mapping[str, Any] | None = None, start: Any = None, stop: Any = None,
              span: Any = None, depth: int = 2) -> tuple[list[dict[str, Any]], str | None]:
        """One page of documents ordered by (`field`, `_id`), read window by window (keyset pagination).

        `match` is the indexed equality prefix and `field` the index's next key. Datetime fields walk
        between now and `EARLIEST` unless `start`/`stop` say otherwise; int fields need both; string
        fields (pass `start=""` or a search prefix) walk forwards between grid points. Each window is one bounded query,
        so a page costs about what it shows whatever the collection holds.
        """
        limit = check_limit(limit)
        after: tuple[Any, ObjectId] | None = decode_cursor(cursor) if cursor else None
        if after is not None:
            start = after[0]
        walk = self._walk(start, stop, descending, span, depth)
        hint_key, newest_first = None, descending and start is None
        if isinstance(walk.start, datetime):
            hint_key = (self.collection_name, field, descending, repr(sorted(match.items())),
                        repr(sorted(post.items())) if post else "")
            hint = WALK_HINTS.get(hint_key)
            if hint is not None:
                walk.span = hint.span
            if newest_first:  # from the skew allowance down to the last page's last row (or one span below now)
                floor = hint.floor if hint is not None else None
                walk.first_low = floor if floor is not None else utcnow() - walk.span
        wanted = limit + 1  # one more than shown tells whether a next page exists
        found: list[dict[str, Any]] = []
        if projection is not None:
            projection = {**projection, field: 1}
        windows = walk.windows()
        try:
            low, high = next(windows)
            first = True
            while True:
                bounds = self._bounds(low, high, descending=descending, first=first)
                docs = self._select({**match, field: bounds}, post=post, projection=projection)
                if first and after is not None:
                    docs = [d for d in docs if self._beyond(d, field, after, descending)]
                docs.sort(key=lambda d: (d[field], d["_id"]), reverse=descending)
                found.extend(docs)
                if len(found) >= wanted:
                    break
                first = False
                low, high = windows.send((len(docs), wanted - len(found)))
        except StopIteration:
            pass
        if hint_key is not None:
            self._learn(hint_key, found, field, wanted, newest_first)
        page = found[:limit]
        next_cursor = encode_cursor(page[-1][field], page[-1]["_id"]) if len(found) > limit else None
        return page, next_cursor

    @staticmethod
    def _learn(key: tuple, found: list[dict[str, Any]], field: str, wanted: int, newest_first: bool) -> None:
        """Remember the spacing of this list's rows and (newest-first lists) where the first page ended."""
        old = WALK_HINTS.get(key)
        if len(found) < wanted:  # the walk reached its end: nothing new to learn about spacing
            if old is not None and newest_first:
                WALK_HINTS.put(key, _Hint(old.span, None))
            return
        keys = [d[field] for d in found[:wanted]]
        gaps = sorted(abs(a - b) for a, b in itertools.pairwise(keys))
        span = max(gaps[len(gaps) // 2] * wanted * 1.25, _MIN_HINT_SPAN)
        floor = keys[-1] if newest_first else (old.floor if old is not None else None)
        WALK_HINTS.put(key, _Hint(span, floor))

    def _merged_pages(self, matches: Sequence[Mapping[str, Any]], field: str, *, limit: int,
                      cursor: str | None = None, **options: Any) -> tuple[list[dict[str, Any]], str | None]:
        """One newest-first page over several index prefixes (the branches of an `$in`, read one by one
        so each stays a bounded window), merged on (`field`, `_id`)."""
        merged: list[dict[str, Any]] = []
        more = False
        for match in matches:
            docs, branch_cursor = self._page(match, field, limit=limit, cursor=cursor, **options)
            merged.extend(docs)
            more = more or branch_cursor is not None
        merged.sort(key=lambda d: (d[field], d["_id"]), reverse=True)
        page = merged[:limit]
        more = more or len(merged) > limit
        return page, (encode_cursor(page[-1][field], page[-1]["_id"]) if page and more else None)

    def _in_transaction(self, write: Callable[[ClientSession], T], *, attempts: int, busy: str,
                        conflicts: tuple[type[Exception], ...] = (DuplicateKeyError,),
                        pause: float = 0.0) -> T:
        """Run `write` in a transaction, again after a write conflict or a racing insert (up to `attempts`);
        then `ConflictError(busy)`."""
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                with self._db.client.start_session() as session:
                    return session.with_transaction(write)
            except conflicts as exc:
                last = exc
            except OperationFailure as exc:
                if not (exc.has_error_label("TransientTransactionError") or exc.code in (112, 251)):
                    raise
                last = exc
            except PyMongoError as exc:
                if not getattr(exc, "has_error_label", lambda _l: False)("TransientTransactionError"):
                    raise
                last = exc
            if pause:
                time.sleep(min(pause * (attempt + 1), 0.05))
        raise ConflictError(busy) from last

    @staticmethod
    def _walk(start: Any, stop: Any, descending: bool, span: Any, depth: int) -> _Walk:
        sample = start if start is not None else stop
        if sample is None or isinstance(sample, datetime):
            now = utcnow() + CLOCK_SKEW
            first, last = (start or now, stop or EARLIEST) if descending else (start or EARLIEST, stop or now)
            return _Walk(first, last, descending, span or timedelta(days=1))
        if isinstance(sample, str):
            if descending:
                raise ValueError("string walks go forwards")
            return _Walk(start or "", stop or STRING_END, False, None, depth)
        if start is None or stop is None:
            raise ValueError("integer walks need a start and a stop")
        return _Walk(start, stop, descending, span or 1000)

    @staticmethod
    def _bounds(low: Any, high: Any, *, descending: bool, first: bool) -> dict[str, Any]:
        """Window bounds. Descending windows are (low, high]: the first one includes the cursor value
        (ties on it are told apart by `_id`). Ascending windows are [low, high)."""
        if descending:
            return {"$gte": low, "$lte": high} if first else {"$gte": low, "$lt": high}
        return {"$gte": low, "$lt": high}

    @staticmethod
    def _beyond(doc: Mapping[str, Any], field: str, after: tuple[Any, ObjectId], descending: bool) -> bool:
        value, oid = after
        key = (doc[field], doc["_id"])
        return key < (value, oid) if descending else key > (value, oid)
