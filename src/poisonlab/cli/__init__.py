"""Typer command-line interface (thin layer over the library)."""
