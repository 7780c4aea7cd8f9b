"""Error notifications (SPEC §6): settings, tracking, the webhook, the messages."""
