"""Test drivers: tools the tests use that are no part of the runtime package."""
