//! The one place cbuild reads and writes YAML: every other module names
//! `compose::yaml`, never a YAML crate, so the parser can change here alone.
//!
//! The parser is `serde_norway`, a maintained fork of the deprecated
//! `serde_yaml` 0.9 with the same API and the same libyaml-based parser
//! (see the README's design section for the comparison with
//! `serde_yaml_ng`, `serde_yml` and the saphyr family). Like go-yaml,
//! which compose uses, it reports syntax errors, duplicate keys and
//! alias-expansion limits with a line and column, and it keeps the `!reset`
//! and `!override` tags compose relies on.

pub use serde_norway::{from_str, to_string, Deserializer, Error, Mapping, Value};
