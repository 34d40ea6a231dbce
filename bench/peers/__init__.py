"""Peers for the throughput benchmark: the scripts a user would otherwise write.

`guide`: Scenario's integration guide as written (sync httpx, one item after another).
`sdk`: an experienced user of the official async SDK (`asyncio.gather` under a semaphore).
"""
