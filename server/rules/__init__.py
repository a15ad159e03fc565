"""Alert rules: pure state machines fed with observations and times, owned per branch."""
