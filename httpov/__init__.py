"""httpov: distributed POV-Ray rendering on Celery and Redis (the render nodes' app is httpov.celery.app)."""
__version__ = "0.1.0"
