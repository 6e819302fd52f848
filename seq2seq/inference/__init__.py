"""Translation from a model file: search, ensembles, int8/bf16 numerics, the Translator and the HTTP
service. Nothing here imports Lightning (tests/test_layout.py checks it)."""
