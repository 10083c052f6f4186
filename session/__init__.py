"""The session core, sans-I/O: sessions, slots, params policy, limits, admission, and
the workers' decisions.

Nothing here touches sockets, threads, asyncio, clocks or torch: events go in
with `now`, messages, jobs and decisions come out. `session.session` is the
per-client state machine (with `slots`, `params`, `limits`, `similarity`),
`session.pool` admits and pins sessions to workers, `session.jobs` is what a
session hands its worker and gets back, and `session.batching` and
`session.restarts` decide what a worker batches and when it reloads its model.
The thread that owns a model and drives those decisions is on the I/O side:
`realtime.server.worker`. tests/test_imports.py holds the core to this.
"""
