//! Durations written as `30m`, `90s`, `1h 30m` (humantime) or whole seconds.

use serde::{de, Deserialize, Deserializer, Serializer};
use std::time::Duration;

pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Text(String),
    }
    match Raw::deserialize(d).map_err(|_| de::Error::custom("expected a duration like 30m"))? {
        Raw::Seconds(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(t.trim())
            .map_err(|e| de::Error::custom(format!("`{t}` is not a duration like 30m: {e}"))),
    }
}
