"""The "what" of satsft: pure functions over plain data plus thin Beam PTransforms around them."""
