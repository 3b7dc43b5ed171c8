"""target-copernica: writes records into Copernica as profiles (work in progress).

It authenticates with the same `CopernicaAuthenticator` as the tap.
"""

from __future__ import annotations

from functools import cached_property

from singer_sdk import Target
from singer_sdk import typing as th

from tap_copernica.auth import DEFAULT_AUTH_URL, CopernicaAuthenticator
from target_copernica.sinks import ProfileSink

SETTINGS = th.PropertiesList(
    th.Property(
        "api_token",
        th.StringType,
        required=True,
        secret=True,
        description="Copernica REST API token; traded for a JWT at the authentication service.",
    ),
    th.Property(
        "api_url",
        th.StringType,
        default="https://api.copernica.com/v4",
        description="REST API v4 base URL.",
    ),
    th.Property(
        "auth_url",
        th.StringType,
        default=DEFAULT_AUTH_URL,
        description="Authentication service that trades the API token for a JWT.",
    ),
    th.Property(
        "database",
        th.StringType,
        description="Destination database (ID or name).",
    ),
).to_dict()


class TargetCopernica(Target):
    """Singer target for Copernica REST API v4."""

    name = "target-copernica"
    config_jsonschema = SETTINGS
    default_sink_class = ProfileSink

    @cached_property
    def authenticator(self) -> CopernicaAuthenticator:
        """One JWT for the whole run, shared by every sink."""
        return CopernicaAuthenticator(
            api_token=str(self.config.get("api_token", "")),
            auth_url=str(self.config.get("auth_url") or DEFAULT_AUTH_URL),
            user_agent=f"{self.name}/{self.plugin_version}",
        )


if __name__ == "__main__":
    TargetCopernica.cli()
