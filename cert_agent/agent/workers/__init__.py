"""Worker processes: one per vendor library, a lane (thread) per token inside it.

``child.py`` runs inside a worker (a driver serving typed requests); ``process.py`` is the
daemon's handle on one (numbered calls, time-outs, restarts); ``protocol.py`` is what crosses
the socket between them.
"""
