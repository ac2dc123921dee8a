"""ragtune's domain code, shipped with every function (imports point here, never back)."""
