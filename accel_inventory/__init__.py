"""Discover accelerators on a compute host and describe them as a topology."""
