"""tfvid.layers."""
