return reap(now_ms())
