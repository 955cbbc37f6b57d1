"""Everything that knows Workplace's wire format: install, tokens, webhooks, events.

The rest of Vigil sees only `shared.models` records coming out of this package.
"""
