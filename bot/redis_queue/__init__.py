"""`JobQueue` on Redis: one fair queue shared by several Folio processes (see queue.py)."""

from bot.redis_queue.config import DELIVERY_LEASE_MIN_S, QueueUnavailableError, RedisQueueConfig
from bot.redis_queue.queue import RedisJobQueue

__all__ = ["DELIVERY_LEASE_MIN_S", "QueueUnavailableError", "RedisJobQueue", "RedisQueueConfig"]
