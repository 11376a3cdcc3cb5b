"""Prometheus metrics of every cfv process (prometheus-client's default registry, so each also reports its
CPU, memory and open files as ``process_*``). Each process serves its own on its metrics port
(:mod:`cfv.monitor`); a process registers what it measures here, and the others' stay at zero."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Gateway
HTTP_REQUESTS = Counter("cfv_http_requests", "HTTP requests answered, by route template, method and status",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("cfv_http_request_duration_seconds", "Time to answer an HTTP request",
                         ["route", "method"], buckets=_SECONDS)
RATE_LIMIT_FAIL_OPEN = Counter("cfv_rate_limit_fail_open", "Requests served unlimited because Redis did not "
                               "answer in time")

# Worker
COMMANDS_APPLIED = Counter("cfv_commands_applied", "Commands applied (committed), by outcome", ["status"])
BATCH_COMMANDS = Histogram("cfv_apply_batch_commands", "Commands per applied transaction",
                           buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
APPLY_LATENCY = Histogram("cfv_apply_duration_seconds", "Time to apply a batch of commands in one transaction, "
                          "retries included", buckets=_SECONDS)
MESSAGES_DEAD_LETTERED = Counter("cfv_command_messages_refused", "Command messages the worker refused to the "
                                 "dead-letter queue")

# Relay
EVENTS_PUBLISHED = Counter("cfv_events_published", "Change events published to the broker and confirmed")
OUTBOX_UNPUBLISHED = Gauge("cfv_outbox_unpublished_events", "Committed change events not yet published "
                           "(read at each scrape)")
OUTBOX_OLDEST_AGE = Gauge("cfv_outbox_oldest_unpublished_age_seconds", "Age of the oldest unpublished change "
                          "event, 0 when none (read at each scrape)")
DEAD_LETTER_DEPTH = Gauge("cfv_dead_letter_queue_messages", "Messages in the commands' dead-letter queue, "
                          "waiting for an operator (read at each scrape)")

# Webhook delivery
WEBHOOK_DELIVERIES = Counter("cfv_webhook_deliveries", "Attempts at delivering an event to a webhook, by outcome "
                             "(succeeded, failed, given_up)", ["outcome"])
WEBHOOKS_DISABLED = Counter("cfv_webhooks_disabled", "Webhooks disabled after consecutive failed deliveries")
