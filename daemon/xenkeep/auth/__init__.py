"""Users, sessions, CSRF, TOTP, API tokens, setup token, throttling, audit."""
