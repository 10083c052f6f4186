"""The session core, sans-I/O: sessions, slots, params policy, workers and admission.

`session.session`, `session.slots`, `session.params` and `session.pool` never
touch sockets, threads, asyncio or torch: events go in with `now`, messages and
jobs come out. `realtime.server.worker` is the one module with a thread: it owns a
model and runs the jobs sessions hand it.
"""
