"""Benchmarks run by hand (see README.md); nothing here is imported by the services."""
