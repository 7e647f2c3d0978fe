"""One module per ``testbed`` command: ``register(subparsers)`` declares it, ``handle``
runs it on its typed options."""
