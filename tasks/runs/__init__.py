"""Run bookkeeping kept in the bucket next to the data: the per-day lease, run summaries (the record of
success), landing completeness, and which days a catch-up run processes."""
