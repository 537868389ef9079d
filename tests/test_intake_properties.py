"""Any bundle intake accepts converts without raising (hypothesis): valid bundles, and valid
bundles with one part replaced by any JSON value or removed — the near-valid and hostile shapes
real exports contain. Pure: no database."""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations_app.conversion import Options, convert_thread
from migrations_app.intake.mirror import BundleRejected, prepare
from migrations_app.intake.validation import check_assistant, check_bundle

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "text", "image_url", "image_file", "refusal", "function", "user"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

ids = st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True)
texts = st.text(max_size=40)
details = st.sampled_from([None, "auto", "low", "high"])
annotations = st.lists(
    st.builds(
        lambda kind, file_id: {"type": kind, "text": "†", kind: {"file_id": file_id}},
        st.sampled_from(["file_citation", "file_path"]),
        ids,
    ),
    max_size=2,
)
blocks = st.one_of(
    st.builds(
        lambda value, notes: {"type": "text", "text": {"value": value, "annotations": notes}},
        texts,
        annotations,
    ),
    st.builds(
        lambda url, detail: {"type": "image_url", "image_url": {"url": url, "detail": detail}},
        st.text(min_size=1, max_size=20),
        details,
    ),
    st.builds(
        lambda fid, detail: {
            "type": "image_file",
            "image_file": {"file_id": fid, "detail": detail},
        },
        ids,
        details,
    ),
    st.builds(lambda text: {"type": "refusal", "refusal": text}, texts),
    st.builds(lambda kind: {"type": kind}, st.text(max_size=10)),
)
attachments = st.lists(
    st.builds(
        lambda fid, tools: {"file_id": fid, "tools": [{"type": t} for t in tools]},
        ids,
        st.lists(st.sampled_from(["file_search", "code_interpreter", "other"]), max_size=2),
    ),
    max_size=2,
)
calls = st.one_of(
    st.builds(
        lambda cid, name, arguments, output: {
            "id": f"call_{cid}",
            "type": "function",
            "function": {"name": name, "arguments": arguments, "output": output},
        },
        ids,
        texts,
        st.one_of(st.none(), texts),
        st.one_of(st.none(), texts),
    ),
    st.builds(
        lambda cid, kind: {"id": f"call_{cid}", "type": kind, kind: {}},
        ids,
        st.sampled_from(["code_interpreter", "file_search"]),
    ),
)


@st.composite
def valid_bundles(draw: Any) -> dict:
    count = draw(st.integers(min_value=0, max_value=5))
    runs = [f"run_{n}" for n in range(draw(st.integers(min_value=0, max_value=3)))]
    messages = []
    for index in range(count):
        role = draw(st.sampled_from(["user", "assistant"]))
        messages.append(
            {
                "id": f"msg_{index}",
                "object": "thread.message",
                "role": role,
                "created_at": draw(st.integers(min_value=0, max_value=99_999_999_999)),
                "content": draw(st.lists(blocks, max_size=2)),
                "attachments": draw(attachments),
                "run_id": draw(st.sampled_from([None, *runs])),
                "assistant_id": draw(st.sampled_from([None, "asst_1"])),
                "metadata": {},
            }
        )
    steps = [
        {
            "id": f"step_{index}",
            "run_id": draw(st.sampled_from(runs or ["run_x"])),
            "type": "tool_calls",
            "created_at": draw(st.integers(min_value=0, max_value=99_999_999_999)),
            "step_details": {"type": "tool_calls", "tool_calls": draw(st.lists(calls, max_size=3))},
        }
        for index in range(draw(st.integers(min_value=0, max_value=3)))
    ]
    steps.append({"id": "step_m", "type": "message_creation", "created_at": "any"})
    return {
        "thread": {
            "id": "thread_" + draw(ids),
            "object": "thread",
            "created_at": draw(st.one_of(st.none(), st.integers(min_value=0, max_value=10**10))),
            "metadata": draw(
                st.one_of(
                    st.dictionaries(st.text(max_size=8), json_values, max_size=2),
                    st.dictionaries(st.text(max_size=70), texts, min_size=15, max_size=20),
                )
            ),
            "tool_resources": draw(
                st.one_of(
                    st.none(),
                    st.just({"file_search": {"vector_store_ids": ["vs_1"]}}),
                    st.just({"code_interpreter": None}),
                )
            ),
        },
        "messages": messages,
        "runs": [{"id": run, "assistant_id": "asst_1"} for run in runs],
        "run_steps": steps,
    }


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def near_valid_bundles(draw: Any) -> Any:
    """A valid bundle with one to three parts replaced by any JSON value or removed, mostly
    inside its messages and run steps (where the shapes are), sometimes anywhere (the whole
    bundle included)."""
    bundle = draw(valid_bundles())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(bundle)
        inner = [p for p in paths if len(p) > 2 and p[0] in ("messages", "run_steps")]
        path = draw(st.sampled_from(inner if inner and draw(st.integers(0, 4)) else paths))
        if not path:
            return draw(json_values)
        parent = bundle
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_values)
    return bundle


def converts(bundle: dict) -> None:
    """As intake stores it and the preview converts it: tool-call steps only, source order."""
    steps = [s for s in bundle.get("run_steps") or [] if s.get("type") == "tool_calls"]
    for options in (Options(), Options(tool_calls=False, attachments=False)):
        convert_thread(bundle["thread"], bundle["messages"], steps, options)


@PROPERTY
@given(valid_bundles())
def test_valid_bundles_are_accepted_and_convert(bundle):
    assert check_bundle(bundle) is None
    converts(bundle)


@PROPERTY
@given(near_valid_bundles())
def test_any_bundle_intake_accepts_converts_without_raising(bundle):
    if check_bundle(bundle) is None:  # (most mutations are refused; those accepted must convert)
        converts(bundle)


@PROPERTY
@given(near_valid_bundles())
def test_checking_any_json_never_raises_and_preparing_refuses_in_words(bundle):
    problem = check_bundle(bundle)
    assert problem is None or isinstance(problem, str)
    try:
        prepare(bundle, Options())
    except BundleRejected as error:
        assert "cannot be converted" not in str(error), "validation let a crash through"


@PROPERTY
@given(
    st.dictionaries(
        st.sampled_from(
            ["id", "name", "model", "tools", "tool_resources", "response_format", "metadata"]
        ),
        json_values,
    )
)
def test_any_assistant_intake_accepts_has_a_responses_configuration(assistant):
    from migrations_app.conversion import responses_config

    if check_assistant(assistant) is None:
        responses_config(assistant)
        responses_config(assistant, {"id": "thread_x", "tool_resources": None})
