"""deadletters."""
