"""OAuth 2.0: the token endpoint (client credentials) and the check of bearer tokens."""
