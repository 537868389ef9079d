"""The duration estimate's arithmetic. Pure: no database."""

import pytest

from migrations_app.estimate import (
    DEFAULT_MESSAGES,
    Estimate,
    SizeClass,
    estimate,
    source_requests,
    upload_requests,
)


@pytest.mark.parametrize(
    ("items", "requests"),
    [
        (0, 1 + 0 + 1),  # create, no write, one verification read
        (1, 1 + 1 + 1),
        (20, 1 + 1 + 1),
        (21, 1 + 2 + 1),
        (100, 1 + 5 + 1),
        (101, 1 + 6 + 2),
        (250, 1 + 13 + 3),
    ],
)
def test_an_upload_is_one_create_a_write_per_20_items_and_a_read_per_100(items, requests):
    assert upload_requests(items) == requests


@pytest.mark.parametrize(
    ("messages", "requests"),
    [
        (0, 1 + 1 + 1 + 0),  # retrieve, one (empty) messages page, runs list, no run
        (2, 1 + 1 + 1 + 1),
        (30, 1 + 1 + 1 + 15),
        (101, 1 + 2 + 1 + 51),
    ],
)
def test_a_fetch_reads_the_thread_its_message_pages_its_runs_and_each_runs_steps(
    messages, requests
):
    assert source_requests(messages) == requests


def test_fetched_threads_count_their_items_or_one_per_message_before_conversion():
    converted = SizeClass(count=3, messages=30, items=45)  # tool-call pairs add items
    unconverted = SizeClass(count=2, messages=30)
    result = estimate([converted, unconverted], per_minute=60)
    assert result.requests == 3 * upload_requests(45) + 2 * upload_requests(30)
    assert (result.threads, result.unfetched, result.source_requests) == (5, 0, 0)


def test_unfetched_threads_are_sized_like_the_average_fetched_thread():
    sizes = [SizeClass(4, messages=10), SizeClass(1, messages=60), SizeClass(10, messages=None)]
    result = estimate(sizes, per_minute=100)
    average = (4 * 10 + 60) / 5  # 20 messages
    assert result.source_requests == 10 * source_requests(average)
    assert (
        result.requests
        == (4 * upload_requests(10) + upload_requests(60) + 10 * (upload_requests(average)))
        + result.source_requests
    )
    assert result.unfetched == 10


def test_with_nothing_fetched_a_thread_is_guessed_at_the_default_size():
    result = estimate([SizeClass(3, messages=None)], per_minute=10)
    per_thread = source_requests(DEFAULT_MESSAGES) + upload_requests(DEFAULT_MESSAGES)
    assert result.requests == 3 * per_thread


def test_nothing_left_is_no_request():
    result = estimate([SizeClass(0, messages=5)], per_minute=3000)
    assert (result.threads, result.requests) == (0, 0)
    assert str(result) == "about 0 requests, under a minute at 3,000/minute"


def test_the_time_is_the_requests_at_the_budget_in_hours():
    # 1,000 threads of 250 items: 17 requests each, 17,000 at 3,000/minute = 5.67 minutes...
    result = estimate([SizeClass(1000, messages=250, items=250)], per_minute=3000)
    assert result.requests == 17_000
    assert str(result) == "about 17,000 requests, about 6 minutes at 3,000/minute"
    # ...and at 60/minute, 283.3 minutes.
    slow = estimate([SizeClass(1000, messages=250, items=250)], per_minute=60)
    assert slow.hours == pytest.approx(17_000 / 60 / 60)
    assert str(slow) == "about 17,000 requests, about 4.7 hours at 60/minute"


def test_one_request_reads_in_the_singular():
    one = Estimate(threads=1, requests=1, source_requests=0, unfetched=0, per_minute=1)
    assert str(one) == "about 1 request, about 1 minute at 1/minute"


def test_a_sample_is_scaled_up_to_the_threads_it_stands_for():
    sample = [SizeClass(3, messages=10), SizeClass(1, messages=None)]
    result = estimate(sample, per_minute=60, threads=1000)
    average = 10
    assert result.threads == 1000 and result.unfetched == 250
    assert result.source_requests == 250 * source_requests(average)
    assert result.requests == 750 * upload_requests(10) + 250 * (
        upload_requests(average) + source_requests(average)
    )


def test_an_empty_sample_of_threads_left_guesses_them_at_the_default_size():
    result = estimate([], per_minute=60, threads=40)
    assert (result.threads, result.unfetched) == (40, 40)
    assert result.requests == 40 * (
        upload_requests(DEFAULT_MESSAGES) + source_requests(DEFAULT_MESSAGES)
    )
