"""Everything httpov keeps in Redis: the key schema (keys.py), the Lua scripts (scripts/*.lua), typed records
(records.py), the JobStore (jobs.py) and the schema version with its upgrades (version.py). docs/ARCHITECTURE.md
lists every key family."""
from __future__ import annotations

from httpov.store.jobs import REDIS_RETRIES, SCENE_DELETE_SECONDS, SUBMIT_LEASE_SECONDS, JobStore, open_store
from httpov.store.keys import Keys
from httpov.store.records import Batches, DoneInfo, FailedInfo, JobRecord, NodeInfo, RunningInfo, Share

__all__ = ["REDIS_RETRIES", "SCENE_DELETE_SECONDS", "SUBMIT_LEASE_SECONDS", "Batches", "DoneInfo", "FailedInfo",
           "JobRecord", "JobStore", "Keys", "NodeInfo", "RunningInfo", "Share", "open_store"]
