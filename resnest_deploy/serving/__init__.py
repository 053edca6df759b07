"""Serving the run's Triton model repository: a real Triton server, its python models, and a client."""
