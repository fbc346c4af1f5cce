"""Operations on a whole deployment: backup and restore (backup.py), their commands (cli.py)."""
