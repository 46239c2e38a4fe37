"""Benchmarks, separate from the tests: each script starts its own server process on a free
loopback port with a temporary data directory, drives the load from its own process, prints a
summary and writes JSON to ``bench/results/``. Shared load-generation helpers live in
:mod:`bench.loadgen`."""
