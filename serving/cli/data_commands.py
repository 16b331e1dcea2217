"""Data commands: generate, validate, features."""

from __future__ import annotations
