"""Reproducible benchmarks: real footage from registry packages, edited copies, and the runs over them."""
