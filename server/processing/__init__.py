"""One branch's processing, with no I/O and no threads: from a decoded device message or a tick of the clock
to points, live values and rule transitions. The ingest (and, scaled out, each worker) runs a set of these."""
