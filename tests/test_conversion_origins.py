"""Which source message or run step each item came from: the alignment the thread page shows.
Pure: no database."""

from migrations_app.conversion import Options, Origin, convert_thread
from migrations_app.sandbox import generate_dataset
from tests.test_conversion import convert, function_call, msg, step, text


def spans(conversion):
    return [(o.kind, o.source, o.start, o.stop, o.message) for o in conversion.origins]


def item_sources(conversion):
    """The id of the message or run step each item came from, parallel to `items`."""
    sources = [""] * len(conversion.items)
    for origin in conversion.origins:
        sources[origin.start : origin.stop] = [origin.source] * (origin.stop - origin.start)
    return sources


def sent(origin):
    return origin.stop > origin.start


def test_each_message_is_the_origin_of_the_one_item_it_became():
    question = msg("user", text("a"), created_at=1)
    answer = msg("assistant", text("b"), created_at=2)
    conversion = convert(question, answer)
    assert spans(conversion) == [
        ("message", question["id"], 0, 1, None),
        ("message", answer["id"], 1, 2, None),
    ]
    assert item_sources(conversion) == [question["id"], answer["id"]]


def test_origins_follow_conversation_order_not_source_order():
    late = msg("user", text("late"), created_at=9)
    early = msg("user", text("early"), created_at=1)
    conversion = convert(late, early)
    assert [o.source for o in conversion.origins] == [early["id"], late["id"]]
    assert conversion.items[0]["content"][0]["text"] == "early"


def test_a_tool_call_pair_names_its_step_and_the_message_its_run_created():
    question = msg("user", text("where is my order?"), created_at=1)
    answer = msg("assistant", text("It shipped."), created_at=3, run_id="run_1")
    calls = step("run_1", function_call("call_1"), created_at=2)
    conversion = convert(question, answer, steps=[calls])
    assert spans(conversion) == [
        ("message", question["id"], 0, 1, None),
        ("step", calls["id"], 1, 3, answer["id"]),
        ("message", answer["id"], 3, 4, None),
    ]
    assert item_sources(conversion) == [question["id"], calls["id"], calls["id"], answer["id"]]


def test_a_skipped_message_keeps_its_place_with_no_items():
    empty = msg("user", created_at=1)
    kept = msg("user", text("x"), created_at=2)
    conversion = convert(empty, kept)
    assert spans(conversion) == [
        ("message", empty["id"], 0, 0, None),
        ("message", kept["id"], 0, 1, None),
    ]
    assert not sent(conversion.origins[0]) and sent(conversion.origins[1])


def test_a_step_whose_calls_cannot_be_sent_keeps_its_place_with_no_items():
    answer = msg("assistant", text("?"), run_id="run_1", created_at=2)
    unanswered = step("run_1", function_call("call_x", output=None), created_at=1)
    conversion = convert(answer, steps=[unanswered])
    assert spans(conversion) == [
        ("step", unanswered["id"], 0, 0, answer["id"]),
        ("message", answer["id"], 0, 1, None),
    ]
    assert conversion.warnings[0].source == unanswered["id"]


def test_switched_off_tool_calls_still_place_their_step():
    answer = msg("assistant", text("x"), run_id="run_1")
    calls = step("run_1", function_call("call_1"))
    conversion = convert(answer, steps=[calls], options=Options(tool_calls=False))
    assert [(o.kind, sent(o)) for o in conversion.origins] == [("step", False), ("message", True)]


def test_a_step_of_a_run_that_created_no_message_names_no_message():
    early = msg("user", text("a"), created_at=1)
    late = msg("user", text("b"), created_at=9)
    orphan = step("run_gone", function_call("call_1"), created_at=5)
    trailing = step("run_later", function_call("call_2"), created_at=20)
    conversion = convert(early, late, steps=[orphan, trailing])
    assert spans(conversion) == [
        ("message", early["id"], 0, 1, None),
        ("step", orphan["id"], 1, 3, None),
        ("message", late["id"], 3, 4, None),
        ("step", trailing["id"], 4, 6, None),
    ]


def test_origins_cover_every_item_once_in_order_across_the_demo_data_set():
    _, bundles = generate_dataset(seed=3, thread_count=40)
    for bundle in bundles:
        conversion = convert_thread(bundle["thread"], bundle["messages"], bundle["run_steps"])
        covered = [i for o in conversion.origins for i in range(o.start, o.stop)]
        assert covered == list(range(len(conversion.items)))
        kinds = {(o.kind, o.source) for o in conversion.origins}
        assert {("message", m["id"]) for m in bundle["messages"]} <= kinds
        assert {("step", s["id"]) for s in bundle["run_steps"]} <= kinds
        assert len(conversion.origins) == len(bundle["messages"]) + len(bundle["run_steps"])
        skipped = [o for o in conversion.origins if o.kind == Origin.MESSAGE and not sent(o)]
        assert len(skipped) == conversion.skipped_messages
