"""Benchmarks: the router against the designs it replaces, measured in the same run.

``python -m benchmarks`` (``make bench``) starts every server on loopback, drives them with
wrk and writes the table to docs/benchmarks.md. Not part of ``make test``.
"""
