"""``deploy``: one command from an architecture to verified artifacts, engines per target GPU, a Triton model
repository and a report, redoing only what changed."""
