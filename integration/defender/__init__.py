"""Everything that talks to Microsoft: sign-in, URLs, transport, retries, the budget."""
