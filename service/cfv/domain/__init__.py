"""The domain rules of cfv: field types, value validation and replace semantics. Pure: no I/O."""
