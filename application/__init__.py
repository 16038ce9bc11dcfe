"""The application layer: command handling between the domain and the API."""
