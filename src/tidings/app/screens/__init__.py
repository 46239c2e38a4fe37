"""One module per screen; each has its KV rules in ``tidings/app/kv/<module>.kv``."""
