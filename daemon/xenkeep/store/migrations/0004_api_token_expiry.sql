-- API tokens may expire: the console's temporary tokens must not outlive a
-- killed command by more than a day. NULL: the token never expires.
ALTER TABLE api_tokens ADD COLUMN expires_at REAL;
