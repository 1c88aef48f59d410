"""Defaults of leases and sweeps, and where a requeued batch goes in the queue."""
from __future__ import annotations

from httpov.dispatch import celery_priority
from httpov.plan import JobSpec
from httpov.settings import Settings
from httpov.sweep import task_of


def test_by_default_a_lost_nodes_batches_come_back_within_ten_seconds(tmp_path):
    s = Settings.from_env({"HOME": str(tmp_path)})
    # the lease runs out at most one lease after the node's death; a sweep finds it within sweep_seconds
    assert s.lease_seconds + s.sweep_seconds < 10
    assert Settings.from_env({"HOME": str(tmp_path), "HTTPOV_LEASE_SECONDS": "2"}).sweep_seconds == 0.5


def _spec(priority: int) -> JobSpec:
    return JobSpec(id="j", name="n", scene_key="k", root="", pov="p.pov", options={}, initial=1, final=1, first=1,
                   last=1, width=8, height=8, count=1, priority=priority)


def test_a_requeued_batch_goes_one_step_ahead_of_its_job_bounded_at_the_top():
    assert [celery_priority(_spec(p)) for p in (0, 5, 9)] == [9, 4, 0]  # Redis serves 0 first
    assert [celery_priority(_spec(p), requeued=True) for p in (0, 5, 9)] == [8, 3, 0]


def test_the_task_id_of_a_lease_token():
    assert task_of("6e13a02c-111e/404a8f0b") == "6e13a02c-111e"
    assert task_of("retry:6e13a02c-111e") == "6e13a02c-111e"
