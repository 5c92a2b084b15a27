"""Built-in pipeline steps (capture, select, validate, report) and the analysis steps."""
