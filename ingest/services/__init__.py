"""Use cases: one function each, no Flask request objects inside."""
