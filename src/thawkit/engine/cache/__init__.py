"""The frozen-layer cache: feature store, cached training path, model surgery."""
