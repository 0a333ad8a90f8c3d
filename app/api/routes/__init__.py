"""HTTP doors: thin routes that parse, authorise, call the engine and shape the response."""
