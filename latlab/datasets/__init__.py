"""Datasets as files: the dump every export format is written from, and the formats."""
