"""The partitioned layout: ``metrics`` cut into one partition a day (docs/partitions.md)."""
