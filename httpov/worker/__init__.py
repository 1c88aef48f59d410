"""The render node: the Celery task, its work, povray in its sandbox, the scene cache, the lease sweeper."""
