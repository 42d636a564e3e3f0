"""Converters: one key map per published checkpoint format."""
