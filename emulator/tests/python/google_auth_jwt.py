#!/usr/bin/env python3
"""Google's own Python client (google-auth) against a running emulator.

Optional conformance check, not run in CI: google-auth signs its JWT-bearer assertion with
aud = https://oauth2.googleapis.com/token whatever the key's token_uri says, and posts it to the
key's token_uri (here the emulator). The emulator must accept that audience, as Google does.

    python3 -m venv /tmp/gauth && /tmp/gauth/bin/pip install google-auth requests
    EMULATOR_URL=http://127.0.0.1:8089 /tmp/gauth/bin/python google_auth_jwt.py

The Rust test `oauth::python_google_auth_gets_a_token` runs it when CRMSYNC_GOOGLE_AUTH_PYTHON
names such an interpreter. Exit status 0 = conformant.
"""

import base64
import json
import os
import sys

import google.auth.transport.requests
import requests
from google.oauth2 import service_account

BASE = os.environ.get("EMULATOR_URL", "http://127.0.0.1:8089").rstrip("/")
USER = os.environ.get("EMULATOR_USER", "pyuser@example.com")
SCOPE = "https://www.googleapis.com/auth/calendar"


def control(path, body):
    r = requests.post(f"{BASE}/_emulator{path}", json=body, timeout=30)
    if r.status_code >= 300:
        sys.exit(f"control {path}: {r.status_code} {r.text}")
    return r.json()


def main():
    control("/users", {"email": USER})
    key = control("/service-accounts", {"domain": USER.split("@")[1]})
    control("/domain-wide-delegation", {"client_id": key["client_id"], "scopes": [SCOPE]})

    creds = service_account.Credentials.from_service_account_info(
        key, scopes=[SCOPE], subject=USER
    )
    creds.refresh(google.auth.transport.requests.Request())
    if not creds.token or not creds.token.startswith("ya29."):
        sys.exit(f"unexpected token {creds.token!r}")

    # The assertion google-auth sent carried Google's audience, not the key's token_uri.
    payload = creds._make_authorization_grant_assertion()  # noqa: SLF001 (the exact JWT)
    if isinstance(payload, str):
        payload = payload.encode()

    claims = json.loads(base64.urlsafe_b64decode(payload.split(b".")[1] + b"=="))
    if claims.get("aud") != "https://oauth2.googleapis.com/token":
        sys.exit(f"google-auth sent aud {claims.get('aud')!r}")

    r = requests.get(
        f"{BASE}/calendar/v3/users/me/calendarList/primary",
        headers={"Authorization": f"Bearer {creds.token}"},
        timeout=30,
    )
    if r.status_code != 200 or r.json().get("id") != USER:
        sys.exit(f"calendarList.get with the token: {r.status_code} {r.text}")
    print(f"ok: google-auth {google.auth.__version__} got a token for {USER} (aud {claims['aud']})")


if __name__ == "__main__":
    main()
