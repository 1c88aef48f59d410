"""The confirmation of the job page's destructive buttons (delete, cancel), against one real `httpov web` server
(cheroot, real Redis, local storage) and signed-in browser sessions: a POST without the field `confirm` naming the job
(a stray form post, an old link, a guess) is refused 400 and changes nothing, in Redis or in storage; the confirmation
page names the job and what goes, and is another user's 403; the API (scripts) needs no confirmation."""
from __future__ import annotations

import pytest
import requests

from tests.store.test_access_matrix import Farm

HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    farm = Farm(tmp_path_factory.mktemp("confirm"))
    try:
        farm.start()
        yield farm
    finally:
        farm.stop()


def stored(farm: Farm, job: str) -> list[str]:
    return sorted(farm.client.storage.list(f"jobs/{job}/"))


def post(session: requests.Session, farm: Farm, path: str, form: dict[str, str],
         html: bool = True) -> requests.Response:
    return session.post(farm.url + path, data=form, headers=HTML if html else {"Accept": "application/json"},
                        allow_redirects=False, timeout=30)


def test_a_destructive_post_without_its_confirmation_is_refused_400_and_changes_nothing(farm):
    uma = farm.sessions["uma"]
    live, done, other = farm.job("uma"), farm.job("uma", "done"), farm.job("uma")
    assert stored(farm, done), "the done job has a stored result to lose"
    for action, job in (("cancel", live), ("delete", done)):
        before, objects = farm.record(job), stored(farm, job)
        for form, said in (({}, "lacks confirmation"), ({"confirm": ""}, "lacks confirmation"),
                           ({"confirm": other}, "has the wrong confirmation")):  # another job's: not this one's
            for html in (True, False):
                refused = post(uma, farm, f"/jobs/{job}/{action}", form, html)
                assert refused.status_code == 400, (action, form, refused.status_code, refused.text[:300])
                message = f"this request to {action} job {job} {said} (the field 'confirm' naming the job)"
                assert message in (refused.text.replace("&#39;", "'") if html else refused.json()["error"])
                assert "nothing was done" in refused.text
        assert farm.record(job) == before and stored(farm, job) == objects  # byte for byte, and every object
    assert farm.record(other)[b"state"] == b"queued"
    # confirmed: done, and back to the page that says so
    answer = post(uma, farm, f"/jobs/{live}/cancel", {"confirm": live})
    assert answer.status_code == 302 and farm.record(live)[b"state"] == b"cancelled"
    answer = post(uma, farm, f"/jobs/{done}/delete", {"confirm": done})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert farm.record(done) == {} and stored(farm, done) == []
    # the API is for scripts: its cancel and delete stay as they were (no confirmation field)
    assert uma.post(f"{farm.url}/api/jobs/{other}/cancel", timeout=30).status_code == 200
    assert uma.delete(f"{farm.url}/api/jobs/{other}", timeout=30).status_code == 200
    assert farm.record(other) == {}


def test_the_confirmation_page_names_the_job_and_what_goes_and_is_anothers_403(farm):
    own, others, ended = farm.job("uma"), farm.job("bob"), farm.job("uma", "done")
    uma = farm.sessions["uma"]
    page = uma.get(f"{farm.url}/jobs/{own}/confirm/cancel", headers=HTML, timeout=30)
    assert page.status_code == 200
    assert f"Cancel job scene ({own})?" in page.text and "dropped from the queue" in page.text
    assert "povrays are killed" in page.text and "frames already rendered, kept" in page.text
    assert f'name="confirm" value="{own}"' in page.text and 'name="csrf_token"' in page.text
    page = uma.get(f"{farm.url}/jobs/{ended}/confirm/delete", headers=HTML, timeout=30)
    assert page.status_code == 200 and f"Delete job scene ({ended})" in page.text
    assert 'data-count="frames_done">1<' in page.text and "storage" in page.text and "cannot be undone" in page.text
    # a live job is not deleted: the page says why and offers no button
    page = uma.get(f"{farm.url}/jobs/{own}/confirm/delete", headers=HTML, timeout=30)
    assert page.status_code == 200 and f"job {own} is queued" in page.text and 'name="confirm"' not in page.text
    # another's job: 403, nothing of it said; an admin may
    for action, kind in (("cancel", "control"), ("delete", "delete")):
        refused = uma.get(f"{farm.url}/jobs/{others}/confirm/{action}", headers=HTML, timeout=30)
        assert refused.status_code == 403, refused.text[:300]
        assert f"uma (user) may not {kind} job {others} (owned by bob)" in refused.text
        assert "Cancel job" not in refused.text and "Delete job" not in refused.text
        refused = farm.sessions["vic"].get(f"{farm.url}/jobs/{own}/confirm/{action}", headers=HTML, timeout=30)
        assert refused.status_code == 403 and f"vic (viewer) may not {kind} job {own}" in refused.text
        admin = farm.sessions["ada"].get(f"{farm.url}/jobs/{others}/confirm/{action}", headers=HTML, timeout=30)
        assert admin.status_code == 200 and f"{action.capitalize()} job scene ({others})" in admin.text
        # and another's POST with the right confirmation is refused all the same
        before = farm.record(others)
        refused = post(uma, farm, f"/jobs/{others}/{action}", {"confirm": others})
        assert refused.status_code == 403 and farm.record(others) == before
    assert uma.get(f"{farm.url}/jobs/{own}/confirm/pause", headers=HTML, timeout=30).status_code == 404
    nobody = requests.get(f"{farm.url}/jobs/{own}/confirm/cancel", headers=HTML, allow_redirects=False, timeout=30)
    assert nobody.status_code == 302 and "/login" in nobody.headers["Location"]
