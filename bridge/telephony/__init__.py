"""The telephony edge: one package per provider, the port they register through (port), the
router of the one dialer chain (routing) and the factory that lists and sets them up."""
