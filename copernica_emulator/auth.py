"""The authentication service (authenticate.copernica.com): API token in, JWT out."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl

from .bodies import FORM_TYPE, media_type
from .jwt import TokenSigner
from .messages import INVALID_TOKEN, Response, error_response, json_response, text_response
from .params import QueryPairs, last


class AuthService:
    def __init__(self, api_token: str, signer: TokenSigner, response_mode: str) -> None:
        if response_mode not in ("text", "json"):
            raise ValueError("auth_response must be 'text' or 'json'")
        self.api_token = api_token
        self.signer = signer
        self.response_mode = response_mode

    def presented_token(self, query: QueryPairs, content_type: str, body: bytes) -> str | None:
        """The token from the form body, else from the query string."""
        if media_type(content_type) == FORM_TYPE and body:
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            from_body = last(form, "access_token")
            if from_body is not None:
                return from_body
        return last(query, "access_token")

    def is_valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.api_token.encode())

    def exchange(self, query: QueryPairs, content_type: str, body: bytes) -> tuple[Response, bool]:
        """Answer one authentication request; the flag tells whether the token was valid."""
        if not self.is_valid(self.presented_token(query, content_type, body)):
            return error_response(INVALID_TOKEN), False
        jwt = self.signer.issue()
        if self.response_mode == "json":
            return json_response({"access_token": jwt}), True
        return text_response(jwt), True
