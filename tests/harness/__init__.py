"""Shared test helpers: real agents, verifiers, browsers and pages for the tests and benchmarks."""
