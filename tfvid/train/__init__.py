"""tfvid.train."""
