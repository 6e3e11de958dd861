-- The provider's raw answer to a failed attempt (truncated, secrets
-- redacted), for operators only: the tenant sees the classified message.
-- Nullable: older attempts and successful ones have none.
ALTER TABLE attempts ADD COLUMN provider_response text;
