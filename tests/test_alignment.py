"""Lining a conversation's listing up with the thread's items: pure, no database. Provenance is
the rule under test: only copies a claim accounts for are ever taken back, and the items a
worker knows it wrote are kept over copies of them."""

from hypothesis import given
from hypothesis import strategies as st

from migrations_app.alignment import Aligner, Claim, align


def message(text):
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def stored(items, prefix="item"):
    """The items as the server lists them: each with its own id."""
    return [{**item, "id": f"{prefix}_{index}"} for index, item in enumerate(items)]


EXPECTED = [message(f"text {index}") for index in range(30)]


def test_a_conversation_holding_exactly_the_items_aligns_whole():
    result = align(stored(EXPECTED), EXPECTED)
    assert (result.matched, result.last_id, result.copies, result.conflict) == (
        30,
        "item_29",
        [],
        False,
    )


def test_a_listing_after_the_cursor_aligns_from_the_committed_index():
    listed = stored(EXPECTED)[20:25]
    result = align(listed, EXPECTED, start=20)
    assert (result.matched, result.last_id, result.conflict) == (5, "item_24", False)


def test_a_claimed_late_copy_is_taken_back():
    listed = stored(EXPECTED) + stored(EXPECTED[20:], prefix="late")
    claim = Claim(start=20, count=20, after="item_19")
    result = align(listed, EXPECTED, claims=[claim])
    assert result.matched == 30 and not result.conflict
    assert result.copies == [f"late_{index}" for index in range(10)]


def test_an_unclaimed_copy_is_a_conflict_and_nothing_is_taken_back():
    listed = [*stored(EXPECTED), {**EXPECTED[3], "id": "customer_1"}]
    result = align(listed, EXPECTED, claims=[Claim(start=20, count=20, after="item_19")])
    assert result.foreign == [(30, "customer_1")]
    assert result.conflict


def test_a_copy_listed_before_the_item_its_write_followed_is_not_that_writes():
    # The claimed write followed item 19, so nothing listed before item 19 can be a copy of it.
    early_copy = {**EXPECTED[25], "id": "early"}
    listed = [*stored(EXPECTED)[:19], early_copy, *stored(EXPECTED)[19:]]
    result = align(listed, EXPECTED, claims=[Claim(start=20, count=20, after="item_19")])
    assert result.foreign == [(19, "early")]


def test_the_items_a_worker_wrote_are_kept_over_a_copy_that_landed_first():
    """The review's finding: a late copy of a batch landed just before the owner's own batch;
    the owner knows its ids, keeps them, and its recorded last item stays."""
    first = stored(EXPECTED[:20])
    late = stored(EXPECTED[20:], prefix="late")
    own = stored(EXPECTED[20:], prefix="own")
    anchors = {item["id"]: 20 + index for index, item in enumerate(own)}
    claim = Claim(start=20, count=20, after="item_19")
    result = align(first + late + own, EXPECTED, anchors=anchors, claims=[claim])
    assert not result.conflict
    assert result.copies == [item["id"] for item in late]
    assert result.last_id == own[-1]["id"]


def test_an_item_a_worker_wrote_that_is_gone_is_a_conflict():
    listed = stored(EXPECTED)[:29]
    result = align(listed, EXPECTED, anchors={"item_29": 29})
    assert result.missing == ["item_29"] and result.conflict


def test_a_copy_whose_ids_came_back_is_recognised_by_its_ids():
    listed = stored(EXPECTED) + stored(EXPECTED[:2], prefix="late")
    claim = Claim(start=0, count=2, item_ids=frozenset({"late_0", "late_1"}))
    assert align(listed, EXPECTED, claims=[claim]).copies == ["late_0", "late_1"]


def test_pages_fed_one_by_one_align_as_the_whole_listing():
    listed = stored(EXPECTED) + stored(EXPECTED[20:], prefix="late")
    claim = Claim(start=20, count=20, after="item_19")
    aligner = Aligner(EXPECTED, claims=[claim])
    for start in range(0, len(listed), 7):
        aligner.feed(listed[start : start + 7])
    assert aligner.result() == align(listed, EXPECTED, claims=[claim])


@given(
    batch=st.integers(0, 2),
    landed=st.integers(0, 30),
    anchored=st.booleans(),
)
def test_a_claimed_batch_landing_anywhere_after_it_leaves_exactly_the_thread(
    batch, landed, anchored
):
    """Whichever moment a late copy of one batch lands, and whether the owner knows its ids,
    taking back the copies leaves the thread's items once, in order, ending on the recorded
    last item."""
    start, stop = batch * 10, batch * 10 + 10
    own = stored(EXPECTED)
    landed = max(landed, start)  # it cannot land before the item it followed
    late = stored(EXPECTED[start:stop], prefix="late")
    listed = own[:landed] + late + own[landed:]
    anchors = {item["id"]: index for index, item in enumerate(own) if anchored or index == 29}
    after = own[start - 1]["id"] if start else ""
    result = align(listed, EXPECTED, anchors=anchors, claims=[Claim(start, 10, after)])
    assert not result.conflict
    kept = [item for item in listed if item["id"] not in result.copies]
    assert [item["content"] for item in kept] == [item["content"] for item in EXPECTED]
    assert result.last_id == "item_29"
