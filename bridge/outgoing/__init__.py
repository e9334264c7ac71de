"""Requests this service makes to URLs its users gave: the guard, the signing, the delivery."""
