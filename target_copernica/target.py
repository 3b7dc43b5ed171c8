"""target-copernica: writes records into Copernica as profiles (work in progress).

It authenticates with the same `CopernicaAuthenticator` as the tap.
"""

from __future__ import annotations

from functools import cached_property

from singer_sdk import Target
from singer_sdk import typing as th

from tap_copernica.auth import (
    CONNECTION_SETTINGS,
    CopernicaAuthenticator,
    authenticator_from_config,
)
from target_copernica.sinks import ProfileSink

SETTINGS = th.PropertiesList(
    *CONNECTION_SETTINGS,
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
        return authenticator_from_config(
            self.config, user_agent=f"{self.name}/{self.plugin_version}"
        )


if __name__ == "__main__":
    TargetCopernica.cli()
