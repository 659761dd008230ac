"""Thin HTTP layers over the service's library functions, one module per area."""
