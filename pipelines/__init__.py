"""Command-line jobs: each module is `python -m pipelines.<job>` and console script `tfvid-<job>`."""
