"""What the workers' fork server imports before it forks any worker (see ``workerproc``).

Importing the worker brings the driver, PyKCS11, cryptography and asn1crypto into the fork
server once; freezing the garbage collector's view of those objects afterwards keeps collections
in the workers from writing to (and so copying) the pages they share with the fork server.
"""

from __future__ import annotations

import gc

import cert_agent.agent.worker  # noqa: F401  (imported for its side of the fork)

gc.freeze()
