"""Merge methods for `average`, one module each, registered by name (see base.py)."""

# importing a method's module registers it; --help lists the methods in this order
from . import mean, slerp, ties, dare  # noqa: F401, I001
from .base import REGISTRY, MergeMethod, get, methods, names, register, resolve_params, taking

__all__ = ["REGISTRY", "MergeMethod", "get", "methods", "names", "register", "resolve_params", "taking"]
