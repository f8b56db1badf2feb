"""Indicator in, envelope out: look up (with the one cache), normalize Defender's machines."""
