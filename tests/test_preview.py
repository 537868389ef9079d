import pytest
from django.test import override_settings

from migrations_app import intake
from migrations_app.conversion import convert_thread
from migrations_app.models import Thread
from migrations_app.preview import ThreadNotMirrored, preview_thread
from migrations_app.sandbox import generate_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def bundles():
    return list(generate_dataset(seed=3, thread_count=40)[1])


def test_the_preview_of_a_mirrored_thread_is_the_conversion_of_its_source(bundles):
    intake.store_bundles(bundles)
    for bundle in bundles:
        preview = preview_thread(Thread.objects.get(thread_id=bundle["thread"]["id"]))
        expected = convert_thread(bundle["thread"], bundle["messages"], bundle["run_steps"])
        assert preview.items == expected.items
        assert preview.warnings == expected.warnings
        assert preview.metadata == expected.metadata
        assert (preview.write_calls, preview.verify_calls) == (
            expected.write_calls,
            expected.verify_calls,
        )


def test_the_preview_honours_the_tool_call_setting(bundles):
    with_calls = next(
        b
        for b in bundles
        if any(
            c["type"] == "function" and c["function"]["output"]
            for s in b["run_steps"]
            for c in s["step_details"]["tool_calls"]
        )
    )
    intake.store_bundles([with_calls])
    thread = Thread.objects.get(thread_id=with_calls["thread"]["id"])
    assert any(i["type"] == "function_call" for i in preview_thread(thread).items)
    with override_settings(MIGRATE_TOOL_CALLS=False):
        assert not any(i["type"] == "function_call" for i in preview_thread(thread).items)


def test_a_thread_not_yet_fetched_has_no_preview():
    thread = Thread.objects.create(thread_id="thread_unfetched")
    with pytest.raises(ThreadNotMirrored, match="thread_unfetched has not been fetched"):
        preview_thread(thread)
