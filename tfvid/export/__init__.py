"""tfvid.export."""
