"""Liên Thông benchmark: see bench/README.md."""
