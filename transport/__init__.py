"""Transport: GraphQL over HTTP and WebSocket, and the fan-out between processes."""
