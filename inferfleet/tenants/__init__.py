"""Tenants and their API keys, which rows and S3 URIs a tenant may reach."""
