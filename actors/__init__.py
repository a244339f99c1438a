"""The wild runtime: simulated CPUs and page tables as Ray actors, flush IPIs as messages, stress campaigns."""
