"""Benchmarks of ome-stream against peer writers, engines and the disk."""
