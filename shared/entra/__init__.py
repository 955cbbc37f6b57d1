"""Microsoft Entra ID as a source: sign-in and directory-audit logs pulled through Graph."""
