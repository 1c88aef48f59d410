"""Paging a job's frames (pure): the page number a query names, and the page links a pager shows."""
from __future__ import annotations

import pytest

from httpov.errors import BadInputError, PageNotFoundError
from httpov.web.source import FramePage, page_number


def test_the_page_number_is_a_whole_number_within_the_pages():
    assert page_number(None, 3, "frames") == 1 and page_number("", 3, "frames") == 1
    assert page_number("3", 3, "frames") == 3
    assert page_number("7", None, "jobs") == 7  # pages not known yet (the jobs page)
    for bad in ("0", "-1", "two", "1e3", "3.0", "9" * 12, "<b>"):
        with pytest.raises(BadInputError, match="not a page number"):
            page_number(bad, 3, "frames")
    with pytest.raises(PageNotFoundError, match="no page 4: frames are on pages 1-3"):
        page_number("4", 3, "frames")


@pytest.mark.parametrize(("number", "pages", "links"), [
    (1, 1, [1]),
    (1, 3, [1, 2, 3]),
    (1, 100, [1, 2, 3, None, 100]),
    (50, 100, [1, None, 48, 49, 50, 51, 52, None, 100]),
    (4, 100, [1, 2, 3, 4, 5, 6, None, 100]),
    (100, 100, [1, None, 98, 99, 100]),
])
def test_the_pager_links_the_first_the_last_and_the_pages_near_this_one(number, pages, links):
    assert FramePage(number, pages, 1, 100).links() == links
