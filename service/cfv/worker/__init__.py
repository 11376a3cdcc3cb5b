"""Workers: consume commands from RabbitMQ and apply them to Postgres in batches."""
