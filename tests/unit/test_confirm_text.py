"""What the confirmation of a destructive job action says (httpov.web.confirm), and the check a POST must pass."""
from __future__ import annotations

from dataclasses import replace

import pytest

from httpov.errors import BadInputError
from httpov.web.confirm import check_confirmed, confirmation, counts
from tests.unit.test_web_pages import VIEW

RUNNING = replace(VIEW, name="walk <cycle>", frames_done=3, batches_total=10, batches_done=3,
                  batches_failed=["b9"], batches_running={"b4": "n@h", "b5": "n@h"})


def test_cancel_names_the_job_what_goes_and_what_stays_with_live_counts():
    c = confirmation("cancel", RUNNING)
    assert c.question == "Cancel job walk <cycle> (j1)?" and c.button == "Cancel job walk <cycle> (j1)"
    assert counts(RUNNING) == {"frames_done": 3, "running": 2, "left": 4}  # 10 - 3 done - 1 failed - 2 running
    goes = {what: n.value for what, n in c.goes if n}
    assert goes == {"batches not yet rendered, dropped from the queue": 4,
                    "running batches, whose povrays are killed (the frames they were rendering are lost)": 2}
    [(kept, n)] = c.stays
    assert "frames already rendered, kept" in kept and n is not None and n.value == 3 and not c.blocked
    done = confirmation("cancel", replace(RUNNING, state="done"))
    assert done.blocked == "job j1 is done: there is nothing to cancel"


def test_delete_says_what_goes_and_is_blocked_while_the_job_lives():
    ended = replace(RUNNING, state="cancelled")
    c = confirmation("delete", ended)
    text = " ".join(what for what, _ in c.goes + c.stays)
    assert c.question == "Delete job walk <cycle> (j1)?" and not c.blocked
    assert "storage" in text and "povray logs" in text and "scene" in text and "cannot be undone" in text
    assert [n.value for _, n in c.goes if n] == [3]
    for state in ("queued", "running", "paused"):
        assert "cancel it first" in confirmation("delete", replace(ended, state=state)).blocked
    with pytest.raises(ValueError):
        confirmation("pause", ended)


@pytest.mark.parametrize("form, said", [({}, "lacks"), ({"confirm": ""}, "lacks"),
                                        ({"confirm": "j2"}, "has the wrong")])
def test_a_post_without_the_confirmation_naming_the_job_is_refused(form, said):
    with pytest.raises(BadInputError, match=f"to delete job j1 {said}.*nothing was done") as refused:
        check_confirmed("delete", "j1", form)
    assert refused.value.hint is not None and "Delete button" in refused.value.hint
    check_confirmed("delete", "j1", {"confirm": "j1"})  # no error
