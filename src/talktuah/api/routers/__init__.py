"""One router a concern: `meta` (public), `models` (the model store)."""
