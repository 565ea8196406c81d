"""CLI commands for GPU engines: build-engine, check-gpu, info (filled in by the GPU work)."""
