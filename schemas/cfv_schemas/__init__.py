"""cfv's wire schemas: HTTP bodies, queue commands, operation outcomes and change events.

Every model here is exported as JSON Schema to ``schemas/json`` (``python -m cfv_schemas.export``);
a test keeps the files in step with the models.
"""
