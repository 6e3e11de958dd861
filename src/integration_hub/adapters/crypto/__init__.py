"""Envelope encryption of tenant secrets: key rings and the encrypting credential store."""
