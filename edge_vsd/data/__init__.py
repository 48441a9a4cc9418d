"""Video data: decoding, frame caches, training pairs, synthetic videos."""
