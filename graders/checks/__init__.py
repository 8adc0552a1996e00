"""Hidden checks, one module per lesson. Source notebooks call them from hidden test lines."""
