"""tfvid.models."""
