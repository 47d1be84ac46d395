"""The OpenAI-compatible HTTP server for a promoted model (and for the demo teacher)."""
