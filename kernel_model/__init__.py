"""tlbrace kernel model: the state, the kernel paths and the oracle of the delayed-rmap race.

Pure Python: no Ray, no I/O. Both runtimes (the controlled explorer in ``controlled.machine`` and the Ray
actors in ``actors``) drive the same path generators defined here.
"""

from kernel_model.compiled import prefer_fresh_sources

# Before any other module of the package is imported: a compiled module whose source changed since its build
# must not run in place of that source (kernel_model/compiled.py).
prefer_fresh_sources()
