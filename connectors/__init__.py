"""Built-in connectors, one folder per kind of upstream system, each with a simulator of it."""
