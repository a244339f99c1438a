"""The controlled runtime and the search: one in-process machine whose every transition a scheduler chooses,
its reduction and canonical keys, the explorer (bfs, dfs, random, pct), the parallel search, replay and
linearization of wild records. No Ray, no I/O but the search's own files.
"""

import kernel_model  # noqa: F401  (installs the compiled-module guard before any module here is imported)
