"""The tap's streams, one module per family of resource, all declared by spec tables.

- `base`: `StreamSpec`, `RecordShape`, `ObjectStream`, `ListStream`, `build_stream_classes`;
- `profiles`: databases, fields, collections, profiles, subprofiles and their ID lists;
- `structure`: views, miniviews, rules, conditions, unsubscribe settings, webhooks,
  consumption;
- `mailings`: emailings, destinations, statistics and events of both mailing products;
- `typed`: one typed table per database and collection;
- `reconciliation`: what the run extracted against the counts Copernica reports.

Modules import downward only: `typed` -> `profiles` -> `base`; `structure` and `mailings`
-> `base`.
"""

from tap_copernica.streams.base import ObjectStream, RecordShape, StreamSpec
from tap_copernica.streams.profiles import ProfileStream

__all__ = ["ObjectStream", "ProfileStream", "RecordShape", "StreamSpec"]
