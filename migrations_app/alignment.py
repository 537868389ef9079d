"""Lining up what a conversation lists with the items its thread converts to. Pure: no Django.

A conversation should hold exactly the thread's items, in order (DESIGN.md, "Provenance"). What
else it may hold, and what the console does about it:

- **Copies of its own items**, written by a console write whose answer was lost, that was in
  flight when its worker lost the lease, or that landed after that. Each such write is a
  `Claim`, recorded in the database: the console's proof that it wrote them. A copy is taken
  back only when a claim covers it (its exact id, or the content of an item the write could
  hold, appended after the item the write followed).
- **Anything else**: an item the customer's application appended, an item someone deleted, an
  item of ours that changed. That is a conflict for staff, and nothing is deleted.

Items this worker knows it wrote (their ids came back) are *anchors*: when a copy and an anchor
hold the same content, the anchor is kept and the copy taken back, so the thread's recorded last
item always still exists after a take-back.

The listing is fed a page at a time (`Aligner.feed`): a 10,000-item conversation is never held
whole.
"""

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from migrations_app.conversion import JSON, item_fingerprint


@dataclass(frozen=True)
class Claim:
    """A console write that may have reached the conversation unrecorded: it could hold
    items[start:start + count], appended after the item `after` ("" : wherever it landed), or
    exactly the items `item_ids` when its answer came back."""

    start: int
    count: int
    after: str = ""
    item_ids: frozenset[str] | None = None

    def covers(self, index: int, item_id: str) -> bool:
        if self.item_ids is not None:
            return item_id in self.item_ids
        return self.start <= index < self.start + self.count


@dataclass
class Alignment:
    """What a listing holds, measured against the expected items from `start` on."""

    matched: int = 0  # expected items held in order, from `start` on
    last_id: str = ""  # the server id of the last of them ("" if the listing held none)
    copies: list[str] = field(default_factory=list)  # ids of provable copies, to take back
    # (listing position, id) of items nobody can account for: the conversation was changed.
    foreign: list[tuple[int, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ids we wrote that the listing lacks
    listed: int = 0  # items in the listing

    @property
    def conflict(self) -> bool:
        return bool(self.foreign or self.missing)


class Aligner:
    """Feed it a conversation's items in order (the whole conversation with `start=0`, or those
    after the item of index `start - 1`), then read `result()`."""

    def __init__(
        self,
        expected: Sequence[JSON],
        *,
        start: int = 0,
        anchors: Mapping[str, int] | None = None,
        claims: Sequence[Claim] = (),
    ) -> None:
        self._wanted = [item_fingerprint(item) for item in expected]
        self._start = self._position = start
        self._anchors = {item_id: index for item_id, index in (anchors or {}).items()
                         if index >= start}  # fmt: skip
        self._anchor_at = {index: item_id for item_id, index in self._anchors.items()}
        self._claims = list(claims)
        self._after = {claim.after for claim in self._claims if claim.after}
        self._after_seen: dict[str, int] = {}
        self._indexes: dict[Hashable, list[int]] | None = None  # built when a copy shows up
        self._attributed: list[tuple[int, str, Claim]] = []
        self._seen_anchors: set[str] = set()
        self._result = Alignment()

    def feed(self, items: Iterable[JSON]) -> None:
        for item in items:
            self._feed_one(item)

    def _feed_one(self, item: JSON) -> None:
        result = self._result
        position, item_id = result.listed, item["id"]
        result.listed += 1
        if item_id in self._after:
            self._after_seen[item_id] = position
        fingerprint = item_fingerprint(item)
        anchored = self._anchors.get(item_id)
        if anchored is not None:
            self._seen_anchors.add(item_id)
            if anchored == self._position and fingerprint == self._wanted[anchored]:
                self._match(item_id)
            else:  # one of ours out of place: items before it are missing, or it changed
                result.foreign.append((position, item_id))
            return
        expected_here = self._position < len(self._wanted) and (
            fingerprint == self._wanted[self._position]
        )
        # An anchor still to come holds this content: this one is the copy.
        if expected_here and self._position not in self._anchor_at:
            self._match(item_id)
            return
        claim = self._claim_for(fingerprint, item_id)
        if claim is None:
            result.foreign.append((position, item_id))
        else:
            self._attributed.append((position, item_id, claim))

    def _match(self, item_id: str) -> None:
        self._position += 1
        self._result.matched = self._position - self._start
        self._result.last_id = item_id

    def _claim_for(self, fingerprint: Any, item_id: str) -> Claim | None:
        if self._indexes is None:
            self._indexes = {}
            for index, wanted in enumerate(self._wanted):
                self._indexes.setdefault(wanted, []).append(index)
        for index in self._indexes.get(fingerprint, ()):
            for claim in self._claims:
                if claim.covers(index, item_id):
                    return claim
        return None

    def result(self) -> Alignment:
        result = self._result
        for position, item_id, claim in self._attributed:
            # A write's items come after the item it followed: anything before it is not its.
            if claim.after and self._after_seen.get(claim.after, -1) > position:
                result.foreign.append((position, item_id))
            else:
                result.copies.append(item_id)
        result.foreign.sort()
        result.missing = [item_id for item_id in self._anchors if item_id not in self._seen_anchors]
        return result


def align(
    listed: Iterable[JSON],
    expected: Sequence[JSON],
    *,
    start: int = 0,
    anchors: Mapping[str, int] | None = None,
    claims: Sequence[Claim] = (),
) -> Alignment:
    """`Aligner` in one call, for a listing already in hand."""
    aligner = Aligner(expected, start=start, anchors=anchors, claims=claims)
    aligner.feed(listed)
    return aligner.result()
