"""tfvid.eval."""
