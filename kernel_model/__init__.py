"""tlbrace kernel model: the state, the kernel paths and the oracle of the delayed-rmap race.

Pure Python: no Ray, no I/O. Both runtimes (the controlled explorer in ``kernel_model.machine`` and the Ray
actors in ``actors``) drive the same path generators defined here.
"""
