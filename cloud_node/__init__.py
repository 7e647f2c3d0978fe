"""Cloud node: holds every model and serves requests the edge misses (filled by the live-loop issue)."""
