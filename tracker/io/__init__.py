"""All I/O of the runtime: frame sources, result sinks, the overlay video and the preview window."""
