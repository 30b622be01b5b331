"""The analytics edge: metrics, sentiment and `dashboard_*` views computed in the warehouse, and the
HTML dashboard published to the bucket."""
