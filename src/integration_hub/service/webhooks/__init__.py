"""Status webhooks: managing endpoints (manage) and the delivery loop (deliver)."""

from integration_hub.service.webhooks.deliver import DeliveryLoopSettings, WebhookDeliverer

__all__ = ["DeliveryLoopSettings", "WebhookDeliverer"]
