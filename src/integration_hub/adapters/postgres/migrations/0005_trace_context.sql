-- W3C trace context of the accepting request, so that workers continue its
-- trace (ADR 0015). Nullable: older rows and untraced requests have none.
ALTER TABLE notifications ADD COLUMN traceparent text, ADD COLUMN tracestate text;
