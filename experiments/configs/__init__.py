"""Presets for the experiments' command lines: plain dicts that flags override."""
