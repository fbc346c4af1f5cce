"""The national public-service portal (DVCQG): its connector, date rules and a simulator of it."""
