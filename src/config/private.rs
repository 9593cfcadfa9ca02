//! `private:`, private tracker mode: users, torrents and accounting in a
//! Gazelle site's database, as Ocelot keeps them (docs/private.md).

use super::duration;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivateConfig {
    /// Off: a public tracker.
    pub enabled: bool,
    /// `mysql://user:pass@host:port/db` (MariaDB, MySQL) or
    /// `postgres://user:pass@host:port/db`.
    pub database_url: String,
    /// How often accounting is written: one statement per table each time.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// How often users, torrents, tokens and the client whitelist are read
    /// again in full (the control endpoint changes them at once meanwhile).
    #[serde(with = "duration")]
    pub reload_interval: Duration,
    /// Gazelle's `TRACKER_SECRET`: the control endpoint is
    /// `/<site_password>/update?action=...`.
    pub site_password: String,
    /// Site-wide freeleech: no download is counted on any torrent.
    pub global_freeleech: bool,
    /// Credited upload = reported upload x this (0 on neutral torrents).
    pub upload_multiplier: f64,
    /// Credited download = reported download x this (0 when free).
    pub download_multiplier: f64,
    /// Where accounting is made durable before each write (one file per
    /// flush, removed after the commit): it waits there while the database
    /// is away and over a stop or a crash, and is replayed at the next
    /// start.
    pub journal_dir: String,
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
}

impl Default for PrivateConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            database_url: String::new(),
            flush_interval: Duration::from_secs(3),
            reload_interval: Duration::from_secs(300),
            site_password: String::new(),
            global_freeleech: false,
            upload_multiplier: 1.0,
            download_multiplier: 1.0,
            journal_dir: "private-journal".into(),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    MySql,
    Postgres,
}

impl PrivateConfig {
    pub fn dialect(&self) -> Option<Dialect> {
        let scheme = self.database_url.split_once("://")?.0;
        match scheme {
            "mysql" | "mariadb" => Some(Dialect::MySql),
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            _ => None,
        }
    }

    /// Checks the section when it is on.
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.dialect().is_none() {
            return Err(format!(
                "private.database_url: {:?} is not a mysql:// or postgres:// URL",
                masked_url(&self.database_url)
            ));
        }
        if self.site_password.len() < 8 {
            return Err(
                "private.site_password: set Gazelle's TRACKER_SECRET (32 characters; at least 8)"
                    .into(),
            );
        }
        if !self
            .site_password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
        {
            return Err(
                "private.site_password: use letters and digits only (it is a path segment)".into(),
            );
        }
        for (key, interval) in [
            ("private.flush_interval", self.flush_interval),
            ("private.reload_interval", self.reload_interval),
            ("private.connect_timeout", self.connect_timeout),
        ] {
            if interval < Duration::from_millis(100) || interval > Duration::from_secs(24 * 3600) {
                return Err(format!("{key}: must be between 100ms and 24h"));
            }
        }
        for (key, m) in [
            ("private.upload_multiplier", self.upload_multiplier),
            ("private.download_multiplier", self.download_multiplier),
        ] {
            if !(0.0..=100.0).contains(&m) {
                return Err(format!("{key}: {m} is outside 0..=100"));
            }
        }
        if self.journal_dir.is_empty() {
            return Err("private.journal_dir: must name a directory (accounting waits there when the database cannot take it)".into());
        }
        Ok(())
    }

    /// For showing: the password in the URL and the site password hidden.
    pub fn masked(&self) -> PrivateConfig {
        let mut shown = self.clone();
        shown.database_url = masked_url(&self.database_url);
        if !shown.site_password.is_empty() {
            shown.site_password = "********".into();
        }
        shown
    }
}

/// `scheme://user:secret@host` shown as `scheme://user:********@host`.
pub fn masked_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> PrivateConfig {
        PrivateConfig {
            enabled: true,
            database_url: "mysql://shoal:pw@127.0.0.1:3306/gazelle".into(),
            site_password: "abcdefghabcdefghabcdefghabcdefgh".into(),
            ..Default::default()
        }
    }

    #[test]
    fn off_is_always_valid_and_on_needs_a_url_and_password() {
        assert!(PrivateConfig::default().validate().is_ok());
        assert!(on().validate().is_ok());
        let mut c = on();
        c.database_url = "sqlite://x".into();
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("private.database_url"));
        let mut c = on();
        c.site_password = "short".into();
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("private.site_password"));
        let mut c = on();
        c.site_password = "abcdefgh/../abcd".into();
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("private.site_password"));
        let mut c = on();
        c.download_multiplier = -1.0;
        assert!(c
            .validate()
            .unwrap_err()
            .starts_with("private.download_multiplier"));
    }

    #[test]
    fn dialects_and_masking() {
        let mut c = on();
        assert_eq!(c.dialect(), Some(Dialect::MySql));
        c.database_url = "postgres://u:secret@h/db".into();
        assert_eq!(c.dialect(), Some(Dialect::Postgres));
        let shown = c.masked();
        assert_eq!(shown.database_url, "postgres://u:********@h/db");
        assert_eq!(shown.site_password, "********");
    }
}
