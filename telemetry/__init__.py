"""OpenTelemetry for a Bot Framework bot: one catalog of names, one call to configure, instrumentation that wraps
the bot from outside. Importing this package has no side effects."""
