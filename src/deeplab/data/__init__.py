"""Data sets in their on-disk formats, joint transforms and palettes."""
