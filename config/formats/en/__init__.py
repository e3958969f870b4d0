"""English (and every locale falling back to it)."""
