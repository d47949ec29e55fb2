"""ShapesWorld (procedural captioned videos) and the manifest dataset for real footage."""
