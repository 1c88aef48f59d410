"""The audit log in a real Redis, through the real CLI (click's CliRunner) and the Client every surface uses: a submit
and a cancel are recorded with who, when, from where and what; a refused action as refused, with the reason; token,
account and per-user limits changes; `httpov audit` filters by user, job and age; records older than
HTTPOV_KEEP_DAYS are trimmed and the stream's length is capped; a hostile name is shown escaped, and given unchanged
as JSON."""
from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest
import redis
from click.testing import CliRunner, Result

from httpov.access import Identity, Role, local_operator
from httpov.audit import AuditLog
from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.settings import Settings
from tests.conftest import REDIS_URL, TINY_ANIMATION, write_scene

HOSTILE = "evil\x1b]0;pwned\x07\nforged 2026-01-01 root (admin) local cancel"


def run(settings: Settings, *args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), env=worker_env(settings), input=stdin)
    print(result.output)
    return result


def audit(settings: Settings, *args: str) -> list[dict]:
    """`httpov audit --json` with these filters: the records, newest last."""
    done = run(settings, "audit", "--json", *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path / "tiny", TINY_ANIMATION, "Width=16\nHeight=16\n+KFI1 +KFF2\n")


def test_a_submit_and_a_cli_cancel_are_recorded_with_who_when_where_and_what(settings, client, scene):
    before = time.time()
    job = client.submit(scene, name="shot", priority=3).spec.id
    done = run(settings, "cancel", job)
    assert done.exit_code == 0, done.output
    again = run(settings, "cancel", job)  # refused: the job is cancelled already (exit 4), and recorded so
    assert again.exit_code == 4
    operator = local_operator()
    records = audit(settings, "--job", job)
    assert [(r["action"], r["outcome"]) for r in records] == [("submit", "done"), ("cancel", "done"),
                                                               ("cancel", "refused")]
    for r in records:  # the CLI with direct Redis access: the local operator, an admin, from this machine
        assert (r["name"], r["role"], r["operator"], r["address"], r["job"]) == (operator.name, "admin", True,
                                                                               "local", job)
        assert before - 1 <= r["at"] <= time.time() + 1
    assert records[0]["detail"] == "shot: 2 frame(s) 1-2, priority 3"
    assert records[2]["reason"] == f"job {job} is already cancelled" and not records[1]["reason"]

    text = run(settings, "audit", "--job", job).stdout.splitlines()
    assert text[0].split() == ["WHEN", "WHO", "FROM", "ACTION", "JOB", "OUTCOME", "DETAIL"]
    assert len(text) == 4 and text[3].split()[2:] == [operator.name, "(admin,", "operator)", "local", "cancel", job,
                                                      "refused", "why:", "job", job, "is", "already", "cancelled"]


def test_each_control_says_what_it_asked_and_what_came_of_it_as_whom(settings, client, scene):
    """A library caller (the web does this) passes who asks; bob acts on his own job (an operator submitted it for
    him), from his address."""
    bob = Identity("bob", Role.USER, address="10.1.2.3")
    job = client.submit(scene, name="bobs", user="bob").spec.id
    client.set_priority(job, 7, who=bob)
    client.pause(job, who=bob)
    client.resume(job, who=bob)
    with pytest.raises(Exception, match="wait for it to finish"):
        client.retry(job, frames=(2, 2), who=bob)
    client.delete(job, force=True, who=bob)  # cancels first: both are recorded
    mine = audit(settings, "--user", "bob")
    assert [(r["action"], r["job"], r["outcome"], r["detail"]) for r in mine] == [
        ("priority", job, "done", mine[0]["detail"]),
        ("pause", job, "done", ""),
        ("resume", job, "done", mine[2]["detail"]),
        ("retry", job, "refused", "frames 2-2"),
        ("cancel", job, "done", ""),
        ("delete", job, "done", "--force: " + mine[-1]["detail"].split(": ", 1)[1]),
    ]
    assert {(r["name"], r["role"], r["operator"], r["address"]) for r in mine} == {("bob", "user", False, "10.1.2.3")}
    assert re.fullmatch(r"priority 7: \d+ queued batch\(es\) moved", mine[0]["detail"])
    assert re.fullmatch(r"\d+ batch\(es\) requeued", mine[2]["detail"])
    assert "stored object(s)" in mine[-1]["detail"] and "Redis key(s)" in mine[-1]["detail"]
    assert audit(settings, "--job", job)[0]["detail"] == "bobs: 2 frame(s) 1-2, priority 5, for bob"


def test_filters_by_user_job_age_and_limit(settings, client, scene):
    log = AuditLog(redis.Redis.from_url(REDIS_URL, decode_responses=True), settings.prefix)
    now = time.time()
    alice, bob = Identity("alice", Role.USER, address="10.0.0.1"), Identity("bob", Role.USER, address="10.0.0.2")
    log.record(alice, "cancel", "j-old", at=now - 3 * 86400)
    log.record(alice, "cancel", "j1", at=now - 7200)
    log.record(bob, "pause", "j1", at=now - 60)
    log.record(bob, "priority", "j2", "priority 9", at=now - 30)
    assert [(r["name"], r["job"]) for r in audit(settings)] == [("alice", "j-old"), ("alice", "j1"), ("bob", "j1"),
                                                               ("bob", "j2")]
    assert [r["job"] for r in audit(settings, "--user", "alice")] == ["j-old", "j1"]
    assert [r["name"] for r in audit(settings, "--job", "j1")] == ["alice", "bob"]
    assert [r["job"] for r in audit(settings, "--user", "bob", "--job", "j2")] == ["j2"]
    assert [r["job"] for r in audit(settings, "--since", "1d")] == ["j1", "j1", "j2"]
    assert [r["job"] for r in audit(settings, "--since", "90m")] == ["j1", "j2"]
    assert [r["job"] for r in audit(settings, "--limit", "2")] == ["j1", "j2"]  # the newest, newest last
    assert audit(settings, "--user", "carol") == []
    assert run(settings, "audit", "--user", "carol").stdout == "no record matches\n"
    bad = run(settings, "audit", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since 'yesterday': give an age such as 7d" in bad.output


def test_records_older_than_keep_days_are_trimmed_and_the_length_is_capped(settings, client, scene):
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    now, someone = time.time(), Identity("alice", Role.USER)
    forever = AuditLog(r, settings.prefix)  # HTTPOV_KEEP_DAYS unset: kept, up to the cap
    forever.record(someone, "cancel", "j-10-days", at=now - 10 * 86400)
    forever.record(someone, "cancel", "j-3-days", at=now - 3 * 86400)
    assert [x.job for x in forever.records()] == ["j-10-days", "j-3-days"]
    # the next record, added by a CLI with HTTPOV_KEEP_DAYS=5, trims what is older than 5 days
    kept = dataclasses.replace(settings, keep_days=5.0)
    assert run(kept, "cancel", "no-such-job").exit_code == 4
    assert [(x["job"], x["outcome"]) for x in audit(kept)] == [("j-3-days", "done"), ("no-such-job", "refused")]

    capped = AuditLog(r, settings.prefix + "-capped", max_records=10)
    try:
        for n in range(300):
            capped.record(someone, "pause", f"j{n}")
        assert 10 <= r.xlen(capped.key) <= 10 + 100  # approximate: Redis trims whole nodes of 100 entries
        assert capped.records(limit=1)[0].job == "j299"
    finally:
        r.delete(capped.key)


def test_token_and_account_changes_are_recorded(settings, tmp_path):
    accounts = str(tmp_path / "accounts")
    assert run(settings, "web-user", "add", "carol", "--accounts", accounts, "--password-stdin",
               stdin="a long password\n").exit_code == 0
    assert run(settings, "web-user", "add", "carol", "--accounts", accounts, "--password-stdin",
               stdin="another long password\n").exit_code == 0
    made = run(settings, "web-token", "add", "carol", "--accounts", accounts, "--label", "farm script")
    assert made.exit_code == 0
    token_id = made.stderr.split()[1]
    assert run(settings, "web-token", "add", "dave", "--accounts", accounts).exit_code == 2  # no such account
    assert run(settings, "web-token", "remove", token_id).exit_code == 0
    assert run(settings, "web-token", "remove", token_id).exit_code == 4  # revoked already
    records = audit(settings)
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == [
        ("account.add", "done", "carol"),
        ("account.password", "done", "carol"),
        ("token.add", "done", f"for carol: token {token_id} of carol (farm script)"),
        ("token.add", "refused", "for dave"),
        ("token.remove", "done", f"token {token_id} of carol (farm script)"),
        ("token.remove", "refused", f"token {token_id}"),
    ]
    assert "is not an account" in records[3]["reason"] and "no token has the id" in records[5]["reason"]
    assert {(r["name"], r["address"], r["operator"]) for r in records} == {(local_operator().name, "local", True)}
    assert made.stdout.strip() not in json.dumps(records)  # never the token itself


def test_per_user_limits_changes_are_recorded(settings):
    assert run(settings, "limits", "set", "bob", "--max-priority", "6", "--weight", "2").exit_code == 0
    assert run(settings, "limits", "clear", "bob").exit_code == 0
    assert run(settings, "limits", "set", "--max-jobs", "1", "--", "bad name").exit_code == 2
    assert [(r["action"], r["outcome"], r["detail"]) for r in audit(settings)] == [
        ("limits.set", "done", "bob: max_priority 6, weight 2.0: now max_priority 6, weight 2.0"),
        ("limits.clear", "done", "bob"),
        ("limits.set", "refused", "bad name: max_jobs 1"),
    ]


def test_a_hostile_name_is_shown_escaped_and_given_unchanged_as_json(settings, tmp_path):
    log = AuditLog(redis.Redis.from_url(REDIS_URL, decode_responses=True), settings.prefix)
    log.record(Identity(HOSTILE, Role.USER, address="10.0.0.9\x1b[2J"), "cancel", "j1", "priority \x1b[31m9")
    # a refused token for a hostile "account", from the real CLI
    assert run(settings, "web-token", "add", HOSTILE, "--accounts", str(tmp_path / "none")).exit_code == 2
    text = run(settings, "audit").stdout
    assert "\x1b" not in text and "\x07" not in text
    assert len(text.splitlines()) == 3  # the header and two records: the name's newline forged no line
    assert "evil\\x1b]0;pwned\\x07\\x0aforged" in text and "10.0.0.9\\x1b[2J" in text and "priority \\x1b[31m9" in text
    records = audit(settings)
    assert records[0]["name"] == HOSTILE and records[0]["address"] == "10.0.0.9\x1b[2J"
    assert records[1]["detail"] == f"for {HOSTILE}" and records[1]["outcome"] == "refused"


def test_a_node_drain_is_recorded(settings):
    from httpov.store import open_store

    open_store(settings).heartbeat("alpha@host", 2, [], {"host": "host"})
    assert run(settings, "nodes", "drain", "alpha").exit_code == 0
    assert run(settings, "nodes", "drain", "gamma").exit_code == 4  # no such node up
    assert [(r["action"], r["outcome"], r["detail"]) for r in audit(settings)] == [
        ("node.drain", "done", "alpha"), ("node.drain", "refused", "gamma")]
