"""Development tools: not used by the CDS service itself."""
