"""Request and response schemas (marshmallow), one module per resource."""
