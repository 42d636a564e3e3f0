"""The weights layer: catalogue, downloads, checkpoint readers, strict assignment, atomic writes.

It names no model family.
"""
