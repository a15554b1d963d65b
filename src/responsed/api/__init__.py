"""HTTP layer: routes, request parsing, auth, SSE framing, the error envelope."""
