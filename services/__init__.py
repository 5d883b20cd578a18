"""Serving: the per-model BentoML runners and the routing service in front of them."""
