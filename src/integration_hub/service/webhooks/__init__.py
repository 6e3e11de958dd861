"""Status webhooks: managing endpoints (manage) and the delivery loop."""
