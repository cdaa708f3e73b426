"""Studies that measure ptybench itself on this machine (the gate's false-alarm and detection rates)."""
