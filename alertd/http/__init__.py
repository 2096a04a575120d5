"""The HTTP layer: request decoding, middleware, and one module of routes per resource."""
