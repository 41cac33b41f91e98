"""Modal screens: confirm, new batch, export, result detail, help."""
