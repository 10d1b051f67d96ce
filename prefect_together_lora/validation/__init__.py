"""Adapter validation: header-only readers feed rules that produce coded findings."""
