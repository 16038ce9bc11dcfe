"""What the tests share: databases, a running server and its clients, GraphQL documents, a
WebSocket client, and the given/when/then helper for deciders."""
