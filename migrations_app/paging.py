"""Work in pieces: `chunks` for any iterable, `pk_pages` for a queryset read a page at a time.

The API's cursor-paged lists have their own helper, `openai_client.paginate`; this module is for
our own database and iterables. (`conversion.batches` is different again: it splits items by
count and bytes for one API call.)
"""

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, TypeVar

from django.db.models import QuerySet

T = TypeVar("T")
PAGE_SIZE = 2000


def chunks(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` items, in order; the iterable is read as they are asked for."""
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


def pk_pages(
    queryset: QuerySet[Any], *fields: str, size: int | None = None, after: int = 0
) -> Iterator[list[Any]]:
    """`queryset` in pages of `size` rows (default PAGE_SIZE) in pk order, from the first pk
    above `after`: lists of pks, or of (pk, *fields) tuples when `fields` are named.

    Keyset paging: each page is one query for the next rows after the last pk handed out, read
    whole before the caller sees it. So the caller may write to the database between pages (the
    task broker's inserts would close an open cursor on SQLite), rows it changed are not read
    again, and a run that stopped can resume after the last pk it finished."""
    size = size or PAGE_SIZE
    while True:
        rows = queryset.filter(pk__gt=after).order_by("pk")
        if fields:
            page: list[Any] = list(rows.values_list("pk", *fields)[:size])
        else:
            page = list(rows.values_list("pk", flat=True)[:size])
        if not page:
            return
        yield page
        after = page[-1][0] if fields else page[-1]
