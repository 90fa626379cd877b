"""Benchmarks: scripts that measure, print a table, and make no timing assertions."""
