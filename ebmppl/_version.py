"""The version of ebmppl, in the base layer so that any module can read it without importing the package's face.

Examples
--------
>>> from ebmppl._version import __version__
>>> import ebmppl
>>> ebmppl.__version__ == __version__
True
"""

__version__ = "0.1.0.dev0"
