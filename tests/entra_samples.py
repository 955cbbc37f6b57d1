"""Entra sign-in and directory-audit records in Microsoft's documented shape (values invented)."""

from __future__ import annotations

from typing import Any

from local.entra_scenario import audit, sign_in

__all__ = ["AUDIT", "SIGN_IN", "TENANT", "audit", "sign_in"]

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


SIGN_IN: dict[str, Any] = {
    "id": "5b1f0c3e-7d2a-4c55-9a61-2f4e8b0d1300",
    "createdDateTime": "2025-03-04T07:41:12.5531120Z",
    "userId": "8e3c7a51-1b2f-4d6e-9c0a-6f5e4d3c2b1a",
    "userPrincipalName": "A.Novak@contoso.example",
    "userDisplayName": "Ana Novak",
    "appId": "00000002-0000-0ff1-ce00-000000000000",
    "appDisplayName": "Office 365 Exchange Online",
    "ipAddress": "203.0.113.45",
    "clientAppUsed": "Browser",
    "isInteractive": True,
    "correlationId": "c0b9a8f7-6e5d-4c3b-2a19-0817f6e5d4c3",
    "conditionalAccessStatus": "notApplied",
    "appliedConditionalAccessPolicies": [],
    "riskDetail": "hidden",
    "riskLevelAggregated": "hidden",
    "riskLevelDuringSignIn": "hidden",
    "riskState": "none",
    "riskEventTypes_v2": [],
    "resourceDisplayName": "Office 365 Exchange Online",
    "resourceId": "00000002-0000-0ff1-ce00-000000000000",
    "status": {
        "errorCode": 50126,
        "failureReason": "Error validating credentials due to invalid username or password.",
        "additionalDetails": "The user didn't enter the right credentials.",
    },
    "deviceDetail": {
        "deviceId": "",
        "displayName": None,
        "operatingSystem": "Windows 10",
        "browser": "Chrome 121.0.0",
        "isCompliant": None,
        "isManaged": None,
        "trustType": None,
    },
    "location": {
        "city": "Amsterdam",
        "state": "Noord-Holland",
        "countryOrRegion": "NL",
        "geoCoordinates": {"altitude": None, "latitude": 52.3676, "longitude": 4.9041},
    },
}

AUDIT: dict[str, Any] = {
    "id": "Directory_7KQ2M_120934871",
    "category": "RoleManagement",
    "correlationId": "4f1e2d3c-5b6a-4978-8a9b-0c1d2e3f4a5b",
    "result": "success",
    "resultReason": "",
    "activityDisplayName": "Add member to role",
    "activityDateTime": "2025-03-04T07:44:03.1187702Z",
    "loggedByService": "Core Directory",
    "operationType": "Assign",
    "initiatedBy": {
        "user": {
            "id": "8e3c7a51-1b2f-4d6e-9c0a-6f5e4d3c2b1a",
            "displayName": None,
            "userPrincipalName": "a.novak@contoso.example",
            "ipAddress": "203.0.113.45",
        },
        "app": None,
    },
    "targetResources": [
        {
            "id": "d2c4e6f8-0a1b-4c3d-8e5f-7a9b1c3d5e7f",
            "displayName": None,
            "Type": "User",
            "userPrincipalName": "svc-backup@contoso.example",
            "groupType": None,
            "modifiedProperties": [
                {
                    "displayName": "Role.DisplayName",
                    "oldValue": None,
                    "newValue": '"Global Administrator"',
                }
            ],
        }
    ],
    "additionalDetails": [],
}
