"""Small asyncio helpers that every layer may use: owned background loops, reconnecting with
backoff, and the newest-wins mailbox."""
