"""Real local servers for offline tests: a Together API emulator, a local Hub, a local S3."""
