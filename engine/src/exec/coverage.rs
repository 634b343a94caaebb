//! Coverage reports (Cobertura XML, LCOV, coverage.py JSON) and the `fail-under` gate.
