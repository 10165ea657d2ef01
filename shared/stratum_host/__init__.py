"""The wiring of Stratum: starting the stack, hosting the functions, the watchdog, the CLI,
the HTTP API and deployment manifests. The only package that imports `functions`; the
library (`stratum`) never does."""
