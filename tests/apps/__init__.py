"""Real upstream servers that the integration and browser tests put behind mitmdump."""
