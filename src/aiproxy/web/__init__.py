"""The web console: built assets (``static/``, from ``web/`` in the repository) served at ``/``."""

from .console import Console

__all__ = ["Console"]
