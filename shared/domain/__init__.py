"""What a run is, independent of any service: configs, examples, the data gate, evaluation, prices, records."""
