"""The RabbitMQ adapter: topology, confirmed publishing and consuming (aio-pika)."""
