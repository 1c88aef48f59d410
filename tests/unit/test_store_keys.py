"""The Redis key schema spells every key exactly as the first release did, so a farm's live data stays readable."""
from __future__ import annotations

import pytest

from httpov.store.keys import JOB_PARTS, Keys

K = Keys("httpov")


def test_every_family_is_the_first_releases_string():
    assert [K.jobs(), K.active(), K.job("j1"), K.lease("j1", "f000001-000002"), K.submit_lease("j1"),
            K.requeued_mark("j1", "b", "t"), K.claim("sweep:leases"), K.frame_history("abc"), K.scene_refs("scenes/x"),
            K.scene_deleting("scenes/x"), K.scene_refs_since(), K.nodes(), K.node_processes(), K.node_pools(),
            K.node_info(), K.node_batches("n@h"), K.slices("j1", 3), K.signature("j1", "b", "d")] == [
        "httpov:jobs", "httpov:active", "httpov:job:j1", "httpov:lease:j1:f000001-000002", "httpov:submitting:j1",
        "httpov:requeued:j1:b:t", "httpov:claim:sweep:leases", "httpov:history:abc", "httpov:scene:scenes/x",
        "httpov:scene-deleting:scenes/x", "httpov:scene-refs-since", "httpov:nodes", "httpov:node_processes",
        "httpov:node_pools", "httpov:node-info", "httpov:node-batches:n@h", "httpov:job:j1:slices:3",
        "httpov:job:j1:sig:b:d"]
    for part in JOB_PARTS:
        assert getattr(K, part)("j1") == f"httpov:job:j1:{part}"
    assert K.schema() == "httpov:schema" and Keys("t1").everything() == "t1:*"


def test_no_job_part_outside_the_schema():
    with pytest.raises(ValueError, match="no key 'spec'"):
        K.job_part("j1", "spec")


def test_the_job_a_key_belongs_to():
    owned = [K.job("j1"), K.done("j1"), K.slices("j1", 2), K.lease("j1", "b"), K.submit_lease("j1"),
             K.requeued_mark("j1", "b", "t"), K.claim("reissue:j1:b:t")]
    assert {K.owner(key) for key in owned} == {"j1"}
    assert K.node_use("n@h") == "httpov:node-use:n@h"  # the nodes page's picture of the farm's use
    shared = [K.jobs(), K.nodes(), K.node_use("j1"), K.claim("sweep:leases"), K.frame_history("j1"),
              K.scene_refs("j1"), "other:job:j1"]
    assert [K.owner(key) for key in shared] == [None] * len(shared)


def test_the_web_interfaces_keys():
    assert [K.web_session("s"), K.web_sign_in("user:a"), K.web_token("ab12"), K.web_tokens(),
            K.web_tokens_of("alice")] == ["httpov:web:session:s", "httpov:web:sign-in:user:a", "httpov:web:token:ab12",
                                          "httpov:web:tokens", "httpov:web:tokens:alice"]
    assert K.owner(K.web_token("ab12")) is None and K.owner(K.web_tokens_of("alice")) is None


def test_the_audit_log_is_one_farm_wide_stream():
    assert K.audit() == "httpov:audit" and K.owner(K.audit()) is None
