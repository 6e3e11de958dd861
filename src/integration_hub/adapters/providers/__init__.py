"""Provider adapters: sandbox outbox, SMTP, SES, Twilio, WhatsApp Cloud API."""
