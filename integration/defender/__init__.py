"""Everything that talks to Microsoft: sign-in, clouds, URLs, transport, retries, the budget."""
