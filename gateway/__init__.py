"""Liên Thông: interoperability gateway for Vietnamese e-government."""

__version__ = "0.1.0"
