"""Everything httpov keeps in Redis: the key schema, the Lua scripts, typed records, the JobStore and the schema
version (docs/ARCHITECTURE.md lists every key family)."""
from __future__ import annotations

from httpov.store.jobs import REDIS_RETRIES, SCENE_DELETE_SECONDS, SUBMIT_LEASE_SECONDS, JobStore, Share, open_store

__all__ = ["REDIS_RETRIES", "SCENE_DELETE_SECONDS", "SUBMIT_LEASE_SECONDS", "JobStore", "Share", "open_store"]
