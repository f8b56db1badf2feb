"""Indicator in, envelope out: parse and validate, look up (with the one cache), normalize."""
