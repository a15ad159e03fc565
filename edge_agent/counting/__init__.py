"""People counting in polygon zones. Pure image arithmetic: frames come in as arrays, counts go out."""
