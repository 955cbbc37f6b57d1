"""The govern queue's message: which action, for which stored alert, asked by which policy."""

from __future__ import annotations

import json
from dataclasses import dataclass

from shared.governance.actions import ACTIONS


@dataclass(frozen=True)
class ActionRequest:
    """A governance work item: which action, for which stored alert, asked by which policy."""

    tenant_id: str
    alert_key: str  # the alert's row key
    action: str
    policy_id: str = ""
    approval_required: bool = False

    def to_message(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "tenant": self.tenant_id,
                "alert": self.alert_key,
                "action": self.action,
                "policy": self.policy_id,
                "approval": self.approval_required,
            }
        )

    @classmethod
    def from_message(cls, body: bytes) -> ActionRequest:
        try:
            d = json.loads(body)
            req = cls(
                str(d["tenant"]),
                str(d["alert"]),
                str(d["action"]),
                str(d.get("policy", "")),
                bool(d.get("approval", False)),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ValueError('governance message must be {"tenant", "alert", "action"}') from None
        if req.action not in ACTIONS:
            raise ValueError(
                f"governance message must name one of {', '.join(ACTIONS)}, not {req.action!r}"
            )
        return req
