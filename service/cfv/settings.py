"""Configuration, from ``CFV_*`` environment variables, with defaults that work on a developer's machine."""

from __future__ import annotations

from typing import Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of cfv. Each field is read from ``CFV_<NAME>``."""

    # Inputs are not echoed in errors: some settings hold passwords and keys.
    model_config = SettingsConfigDict(env_prefix="CFV_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    database_url: str = "postgresql://postgres@127.0.0.1:5432/cfv"
    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ: one AMQP URL, or the "
                          "nodes of a cluster, comma-separated (each process connects to one that answers, "
                          "and moves to another when it is lost)")
    http_host: str = "127.0.0.1"
    http_port: int = 8080

    write_timeout: float = Field(10.0, description="seconds the gateway waits for a write before answering 202")
    max_body_bytes: int = Field(1_048_576, description="larger request bodies are answered 413")
    db_pool_size: int = Field(10, ge=2, description="connections per process (a worker applying a message "
                              "alone uses two)")

    command_linger: float = Field(0.003, ge=0, description="seconds a busy lane (a workspace and key whose last "
                                  "message carried several commands) waits for more to join its next message")
    command_shards: int = Field(4, ge=1, le=64, description="command queues; one workspace maps to one")
    worker_prefetch: int = Field(256, ge=2, description="unacked commands a worker holds per shard queue")
    worker_batch_max: int = Field(512, ge=1, description="most command messages applied in one transaction")
    rebalance_every: float = Field(1.0, gt=0, description="seconds between a worker's looks at the live workers, "
                                   "handing over the shards it is active on that another should take")
    crash_limit: int = Field(3, ge=1, description="times a worker may die while applying a redelivered message "
                             "alone before that message is dead-lettered (deaths while it waited for a lock or a "
                             "dependency, or while the message was in a batch, do not count)")
    delivery_limit: int = Field(1000, ge=2, description="deliveries after which RabbitMQ dead-letters a message "
                                "itself, whatever the cause: a backstop, far above any crash loop (every death of "
                                "a worker redelivers its whole prefetch); cfv counts what a message did itself "
                                "(crash_limit). Set on the command queues by the policy cfv-commands, so changing "
                                "it never breaks redeclaring a queue")
    broker_policies: Literal["apply", "expect"] = Field("apply", description="apply: every process sets the "
                                                        "policy cfv-commands (dead-lettering and the delivery limit "
                                                        "of the command queues) at start, through RabbitMQ's "
                                                        "management API; expect: an operator sets it, and "
                                                        "processes only check that it is in effect")
    rabbitmq_management_url: str = Field("", description="RabbitMQ's management API, for the policy (needs the "
                                         "rabbitmq_management plugin; with apply, a user tagged policymaker), or "
                                         "several, comma-separated, tried in turn; empty: each node of "
                                         "CFV_AMQP_URL on its AMQP port plus 10000 (15672 for 5672), with its "
                                         "user and password")

    relay_batch: int = Field(500, ge=1, description="most events the relay publishes per round")
    relay_linger: float = Field(0.03, ge=0, description="seconds the relay waits, once told of new events, for more "
                                "to join the same window (fewer rounds under load, that much later)")
    event_retention: float = Field(7 * 86400, gt=0, description="seconds the event log keeps a change event "
                                   "(readable by GET /api/v1/events and `cfv events`); the active relay prunes "
                                   "older ones once published, always keeping each workspace's newest")
    operation_retention: float = Field(30 * 86400, gt=0, description="seconds an operation's outcome is kept "
                                       "(GET /api/v1/operations/{id}; a redelivered command is answered from it); "
                                       "pending ones are never pruned")
    idempotency_retention: float = Field(7 * 86400, gt=0, description="seconds an Idempotency-Key is remembered; "
                                         "a retry after that is a new request (at most the operation retention)")
    prune_every: float = Field(60.0, gt=0, description="seconds between the relay's prunings of the event log")
    relay_poll_interval: float = Field(1.0, description="seconds between outbox polls without a notification")

    secret_keys: SecretStr = Field(SecretStr(""), description="keys that seal webhooks' signing secrets in the "
                                   "database (Fernet keys, comma-separated, newest first: the first seals, any "
                                   "opens); make one with `cfv secrets new-key`, reseal under a new first key with "
                                   "`cfv secrets reseal`; empty: webhooks cannot be created or rotated (503)")
    webhook_allow_private: bool = Field(False, description="webhooks may reach loopback, private, link-local and "
                                        "other non-public addresses (for tests and closed networks only: it lets "
                                        "an administrator make cfv call its own network)")
    webhook_timeout: float = Field(10.0, gt=0, description="seconds a webhook's receiver has to answer a delivery "
                                   "with a 2xx before the attempt counts as failed")
    webhook_retry_first: float = Field(5.0, gt=0, description="seconds before the first retry of a failed "
                                       "delivery; each further retry waits twice as long (jittered)")
    webhook_retry_ceiling: float = Field(3600.0, gt=0, description="most seconds between two retries of a delivery")
    webhook_give_up_after: float = Field(86400.0, gt=0, description="seconds an event's delivery is retried before "
                                         "it is given up (logged, recorded as given_up) and the next one is sent")
    webhook_disable_after: int = Field(100, ge=1, description="consecutive failed attempts (over any events) after "
                                       "which a webhook is disabled, with the reason; PATCH enabled=true resumes it")
    webhook_batch: int = Field(100, ge=1, description="most events a delivery process reads for one webhook at a "
                               "time")
    webhook_concurrency: int = Field(8, ge=1, description="webhooks one delivery process delivers to at once (each "
                                     "holds a database connection while it does: at most the pool's size less two)")
    webhook_poll_interval: float = Field(1.0, gt=0, description="seconds between a delivery process's looks for due "
                                         "webhooks when no new event woke it (retries fall due without one)")
    webhook_delivery_retention: float = Field(7 * 86400, gt=0, description="seconds the record of a delivery "
                                              "attempt is kept (GET /api/v1/webhooks/{id}/deliveries)")

    shutdown_timeout: float = Field(15.0, gt=0, description="seconds a process takes at most to stop gracefully on "
                                    "SIGTERM or SIGINT (the gateway finishes its requests, a worker its batch, the "
                                    "relay its round) before it stops anyway")

    log_level: str = "INFO"
    log_json: bool = False
    access_log: bool = Field(True, description="the gateway logs a line per request (method, route, status, "
                             "duration, key id; never the key), at INFO")
    metrics_host: str = Field("127.0.0.1", description="address of the monitoring port (/metrics, /livez, "
                              "/readyz); 0.0.0.0 to let a scraper on another host reach it")
    metrics_port: int = Field(9464, ge=0, le=65535, description="monitoring port of a process; `cfv run` gives "
                              "the gateway this one, the relay the next and each worker one more; 0: none")

    redis_url: str = Field("redis://127.0.0.1:6379/0",
                           description="Redis holding the rate-limit counters, shared by every gateway")
    redis_timeout: float = Field(0.25, gt=0, description="seconds a rate-limit check waits for Redis before "
                                 "the request is served unlimited")
    rate_limit_window: float = Field(60.0, gt=0, description="seconds per rate-limit window")
    rate_limit_writes: int = Field(6000, ge=1, description="value writes per API key and window")
    rate_limit_reads: int = Field(12000, ge=1, description="reads (GET) per API key and window")
    rate_limit_definitions: int = Field(600, ge=1, description="other requests (fields, choices, sets, projects, "
                                        "properties, options, administration) per API key and window")
    auth_failure_limit: int = Field(100, ge=1, description="failed authentications (401) per source address and "
                                    "window; more are answered 429 before the key is checked")
    rate_limit_lease: int = Field(50, ge=1, description="most tokens a gateway takes from a shared rate-limit "
                                  "counter at once (at most a hundredth of the budget): one Redis round trip "
                                  "serves that many requests")
    rate_limit_prefix: str = Field("", description="namespace of the counters in Redis; empty: cfv:<database name>")
    max_json_depth: int = Field(32, ge=1, description="deepest nesting of arrays and objects in a request body")
    max_string_length: int = Field(1_048_576, ge=1, description="longest string (in characters) in a request "
                                   "body; by default as long as a body may be, leaving long values to validation")

    @field_validator("secret_keys")
    @classmethod
    def _keys_are_fernet_keys(cls, value: SecretStr) -> SecretStr:
        for n, key in enumerate(k.strip() for k in value.get_secret_value().split(",") if k.strip()):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(f"key {n + 1} of CFV_SECRET_KEYS is not a Fernet key (32 url-safe base64-encoded "
                                 "bytes; make one with `cfv secrets new-key`)") from None
        return value
