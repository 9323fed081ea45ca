"""Test PKI and SoftHSM2 tokens modelled on the tax authority's certificates and media."""

from softhsm_fixtures.build import FixtureCert, Fixtures, FixtureToken, build_fixtures, load_fixtures

__all__ = ["FixtureCert", "FixtureToken", "Fixtures", "build_fixtures", "load_fixtures"]
