"""Host galaxies: synthetic DR10-like LRGs (the embedded default) and ingested real cutouts."""
