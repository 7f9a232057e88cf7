"""Webhook delivery: the worker that sends queued deliveries (worker.py), how it claims
and records them in the database (store.py), the HTTP sending (sender.py), the
Standard Webhooks signature (signing.py), and which addresses may be sent to
(addresses.py)."""
