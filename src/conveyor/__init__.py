"""Conveyor: self-hosted CI/CD that runs GitHub-Actions-style workflows."""

__version__ = "0.1.0"
