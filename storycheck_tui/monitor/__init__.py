"""Monitoring: the round scheduler and the webhook deliverer, engine-side threads that every
worker (and a console with a source) runs next to its check threads."""
