"""Webhook delivery adapters: the HTTP sender."""

from integration_hub.adapters.webhooks.sender import AiohttpWebhookTransport

__all__ = ["AiohttpWebhookTransport"]
