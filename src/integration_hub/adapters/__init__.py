"""Adapters: implementations of the ports for real backends and providers."""
