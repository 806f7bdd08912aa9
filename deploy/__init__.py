"""The local cluster launcher (``make up`` / ``make down`` / ``make status``)."""
