"""`ragtune`: submit, watch, inspect and ask runs of a ragtune deployment (AWS or the local stack)."""
