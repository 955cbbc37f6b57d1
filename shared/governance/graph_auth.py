"""Governance's Microsoft Graph token: MSAL (a client secret or certificate) or a managed
identity. The one place that knows about Entra credentials; tokens never reach a log or an
exception."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

import msal
import requests

from shared.config import ConfigError, GraphSettings
from shared.governance.graph_results import GraphError

SCOPE = "https://graph.microsoft.com/.default"


class TokenSource(Protocol):
    def token(self) -> str: ...


def graph_session(settings: GraphSettings) -> requests.Session:
    session = requests.Session()
    if settings.graph_ca_bundle:
        # REQUESTS_CA_BUNDLE in the environment would otherwise override `verify`.
        session.trust_env = False
        session.verify = settings.graph_ca_bundle
    return session


class MsalTokenSource:
    """MSAL's client-credentials flow with a secret or a certificate; one app per process."""

    def __init__(self, settings: GraphSettings, session: requests.Session) -> None:
        tenant, client_id = settings.graph_app()
        credential: Any = settings.graph_client_secret
        if settings.graph_client_certificate_path:
            path = Path(settings.graph_client_certificate_path)
            try:
                pem = path.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"GRAPH_CLIENT_CERTIFICATE_PATH: cannot read {path} ({type(exc).__name__}); "
                    "point it at a PEM file holding the app's private key and certificate"
                ) from None
            credential = {"private_key": pem, "public_certificate": pem}
        self._client_id, self._credential, self._session = client_id, credential, session
        self._authority = f"{settings.graph_authority_host}/{tenant}"
        # Instance discovery asks login.microsoftonline.com; skip it for any other host.
        self._discovery = settings.graph_authority_host.endswith(".microsoftonline.com")
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        try:
            with self._lock:  # its in-memory cache makes repeated calls cheap
                if self._app is None:
                    # MSAL reads the authority's OpenID configuration here, over the network.
                    self._app = msal.ConfidentialClientApplication(
                        self._client_id,
                        authority=self._authority,
                        client_credential=self._credential,
                        http_client=self._session,
                        instance_discovery=None if self._discovery else False,
                    )
                result = self._app.acquire_token_for_client(scopes=[SCOPE])
        except (requests.RequestException, ValueError) as exc:
            # Entra unreachable or answering 5xx: transient, so the work is retried later.
            raise GraphError(503, "token_endpoint_unavailable", type(exc).__name__) from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            err = result if isinstance(result, dict) else {}
            raise GraphError(
                401,
                str(err.get("error", "token_error")),
                str(err.get("error_description", ""))[:300],
            )
        return str(token)


class ManagedIdentityTokenSource:
    """azure-identity's ManagedIdentityCredential (user-assigned when a client id is set)."""

    def __init__(self, settings: GraphSettings) -> None:
        from azure.identity import ManagedIdentityCredential

        self._credential = ManagedIdentityCredential(
            client_id=settings.graph_managed_identity_client_id
        )

    def token(self) -> str:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self._credential.get_token(SCOPE).token)
        except ClientAuthenticationError as exc:
            # The message names the identity endpoint's answer, never a token.
            raise GraphError(401, "managed_identity_error", str(exc.message)[:300]) from None


def token_source(settings: GraphSettings, session: requests.Session) -> TokenSource:
    if settings.graph_auth == "managed-identity":
        return ManagedIdentityTokenSource(settings)
    return MsalTokenSource(settings, session)
