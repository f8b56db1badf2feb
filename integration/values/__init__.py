"""The bottom layer: values every other layer passes around (indicators and their parsers,
the result envelope, machine records, times). It imports nothing of ours above it."""
