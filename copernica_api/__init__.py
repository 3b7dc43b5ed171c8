"""The Copernica REST API v4 client shared by tap-copernica and target-copernica.

It imports neither plugin. Layers, each importing only the ones above it:

- `errors`, `tls`, `payloads`, `timeutil`: leaves (messages, TLS trust, JSON bodies, clocks);
- `fields`: the per-field-type readers (API to record) and writers (record to API);
- `auth`: the API token traded for a JWT, cached and renewed;
- `http`: response classification, the retry policy and `CopernicaSession`;
- `settings`: the connection and request settings both plugins declare, typed once;
- `sdk_compat`: every use of the Singer SDK's private members, in one place.
"""
