"""The use cases the handlers call: prepare, start, poll, ask, evaluate, report, failed deliveries."""
