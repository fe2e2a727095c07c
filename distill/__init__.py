"""distill: distill an expensive teacher into a small student and serve it behind an alias.

The client side lives here (the Distiller SDK, the CLI); generated contracts are in distill.v1.
"""

__version__ = "0.1.0"
