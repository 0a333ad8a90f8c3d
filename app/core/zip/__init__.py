"""ZIP bytes: the format as a function of the layout, the writer, CRC-32; nothing of HTTP."""
