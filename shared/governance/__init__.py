"""Governance: actions taken in the identity provider (Microsoft Graph) because of alerts."""
