"""The Government Office's national document exchange platform (trục liên thông văn bản quốc gia):
its simulator (docs/documents.md)."""
