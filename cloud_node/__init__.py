"""Cloud node: holds every model and serves what the edge misses (built by the live-loop issue)."""
