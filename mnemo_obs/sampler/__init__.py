"""The sampler: history of the Redis, PostgreSQL and host gauges, and of every writer's health.

See :class:`Sampler`; ``install()`` starts one (``sample_interval=``).
"""

from __future__ import annotations

from .sampler import Sampler

__all__ = ["Sampler"]
