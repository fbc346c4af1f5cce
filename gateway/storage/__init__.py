"""Storage: SQLAlchemy 2 Core over SQLite (WAL, the embedded default) or PostgreSQL."""
