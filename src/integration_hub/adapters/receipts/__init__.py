"""Inbound delivery receipts, one module per provider: signature checks and parsing.

Each module turns a provider's callback into domain ``Receipt`` values and
raises only the errors of ``common`` (BadSignature, MalformedReceipt and
their kin). None holds a store or a web framework: the API endpoints and the
store methods that record receipts call these (not wired yet: see
docs/receipts.md).
"""
