"""evalkit: benchmark robot Vision-Language-Action policies in simulation.

The core (this package) imports neither torch nor a simulator; policies and suites are
chosen by name through `evalkit.core.registry` and imported only when used.
"""

__version__ = "0.1.0"
