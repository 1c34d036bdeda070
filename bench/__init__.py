"""Benchmarks for promptopt: not tests; they print and write results under bench/results/."""
