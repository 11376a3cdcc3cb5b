"""Configuration, from ``CFV_*`` environment variables, with defaults that work on a developer's machine."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of cfv. Each field is read from ``CFV_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CFV_", env_file=".env", extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/cfv"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    http_host: str = "127.0.0.1"
    http_port: int = 8080

    write_timeout: float = Field(10.0, description="seconds the gateway waits for a write before answering 202")
    max_body_bytes: int = Field(1_048_576, description="larger request bodies are answered 413")
    db_pool_size: int = 10

    command_shards: int = Field(4, ge=1, le=64, description="command queues; one workspace maps to one")
    worker_prefetch: int = Field(256, ge=2, description="unacked commands a worker holds per shard queue")
    worker_batch_max: int = Field(512, ge=1, description="most command messages applied in one transaction")
    delivery_limit: int = Field(10, ge=2, description="deliveries of a failing command before dead-lettering")

    relay_batch: int = Field(500, ge=1, description="most events the relay publishes per round")
    relay_poll_interval: float = Field(1.0, description="seconds between outbox polls without a notification")

    log_level: str = "INFO"
    log_json: bool = False
