"""The exporter service: exports the adapter, a merged model and smoke-tested GGUFs."""
