"""Test support: the servers, launchers, caches and waits that test suites share (see README.md)."""
