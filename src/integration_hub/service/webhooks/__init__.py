"""Status webhooks: the delivery loop."""

from integration_hub.service.webhooks.deliver import DeliveryLoopSettings, WebhookDeliverer

__all__ = ["DeliveryLoopSettings", "WebhookDeliverer"]
