//! One connection to the site's database (sqlx, MariaDB/MySQL or
//! PostgreSQL), used by the database thread only: loads the catalog,
//! resets peer rows at start, writes batches in one transaction.

use super::sql;
use crate::config::Dialect;
use crate::private::catalog::{passkey, Catalog, Freeleech, Torrent, User};
use sqlx::{Connection, Row};
use std::time::Duration;

pub enum Db {
    MySql(sqlx::MySqlConnection),
    Postgres(sqlx::PgConnection),
}

/// MariaDB's default `max_allowed_packet` is 16 MiB; a statement stays
/// well under what the server says it takes.
const DEFAULT_MAX_BYTES: usize = 4 << 20;
const MAX_BYTES: usize = 64 << 20;

async fn timed<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// Runs `$body` with `$c` bound to whichever connection this is.
macro_rules! each {
    ($db:expr, $c:ident => $body:expr) => {
        match $db {
            Db::MySql($c) => $body,
            Db::Postgres($c) => $body,
        }
    };
}

impl Db {
    pub async fn connect(url: &str, dialect: Dialect, limit: Duration) -> Result<Db, String> {
        Ok(match dialect {
            Dialect::MySql => {
                Db::MySql(timed(limit, "connect", sqlx::MySqlConnection::connect(url)).await?)
            }
            Dialect::Postgres => {
                Db::Postgres(timed(limit, "connect", sqlx::PgConnection::connect(url)).await?)
            }
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::MySql(_) => Dialect::MySql,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The longest statement to send.
    pub async fn max_statement_bytes(&mut self, limit: Duration) -> usize {
        match self {
            Db::MySql(c) => {
                let q =
                    sqlx::query("SELECT CAST(@@max_allowed_packet AS SIGNED)").fetch_one(&mut *c);
                match timed(limit, "max_allowed_packet", q).await {
                    Ok(row) => row.try_get::<i64, _>(0).map_or(DEFAULT_MAX_BYTES, |n| {
                        (n as usize * 3 / 4).clamp(1 << 20, MAX_BYTES)
                    }),
                    Err(_) => DEFAULT_MAX_BYTES,
                }
            }
            Db::Postgres(_) => MAX_BYTES,
        }
    }

    /// Ocelot's start: no peer rows, no seeders or leechers.
    pub async fn reset(&mut self, limit: Duration) -> Result<(), String> {
        let statements: Vec<String> = sql::reset(self.dialect())
            .iter()
            .map(|s| s.to_string())
            .collect();
        self.write(&statements, limit).await
    }

    /// Runs `statements` in one transaction.
    pub async fn write(&mut self, statements: &[String], limit: Duration) -> Result<(), String> {
        each!(self, c => {
            let mut tx = timed(limit, "begin", c.begin()).await?;
            for s in statements {
                timed(limit, "write", sqlx::raw_sql(s).execute(&mut *tx)).await?;
            }
            timed(limit, "commit", tx.commit()).await
        })
    }

    /// Users, torrents, tokens and the whitelist, as one catalog.
    pub async fn load(&mut self, limit: Duration) -> Result<Catalog, String> {
        let d = self.dialect();
        let mut catalog = Catalog {
            loaded: true,
            ..Catalog::default()
        };
        each!(self, c => {
            let rows = timed(limit, "load torrents", sqlx::query(sql::load_torrents(d)).fetch_all(&mut *c)).await?;
            for row in rows {
                let id: i64 = row.try_get(0).map_err(|e| format!("torrents.ID: {e}"))?;
                let hash: Vec<u8> = row.try_get(1).map_err(|e| format!("torrents.info_hash: {e}"))?;
                let flag: Option<String> = row.try_get(2).map_err(|e| format!("torrents.FreeTorrent: {e}"))?;
                let (Ok(info_hash), Ok(id)) = (<[u8; 20]>::try_from(hash.as_slice()), u32::try_from(id)) else {
                    continue;
                };
                catalog.torrents.insert(info_hash, Torrent {
                    id,
                    freeleech: Freeleech::from_flag(flag.as_deref().unwrap_or("0")),
                });
            }
            let rows = timed(limit, "load users", sqlx::query(sql::load_users(d)).fetch_all(&mut *c)).await?;
            for row in rows {
                let id: i64 = row.try_get(0).map_err(|e| format!("users_main.ID: {e}"))?;
                let can_leech: Option<i64> = row.try_get(1).map_err(|e| format!("users_main.can_leech: {e}"))?;
                let pass: Option<String> = row.try_get(2).map_err(|e| format!("users_main.torrent_pass: {e}"))?;
                let protected: Option<i64> = row.try_get(3).map_err(|e| format!("users_main.Visible: {e}"))?;
                let (Some(key), Ok(id)) = (pass.as_deref().and_then(|p| passkey(p.as_bytes())), u32::try_from(id)) else {
                    continue;
                };
                catalog.users.insert(key, User {
                    id,
                    can_leech: can_leech.unwrap_or(1) != 0,
                    protected: protected.unwrap_or(0) != 0,
                });
            }
            let rows = timed(limit, "load tokens", sqlx::query(sql::load_tokens(d)).fetch_all(&mut *c)).await?;
            for row in rows {
                let user: i64 = row.try_get(0).map_err(|e| format!("users_freeleeches.UserID: {e}"))?;
                let torrent: i64 = row.try_get(1).map_err(|e| format!("users_freeleeches.TorrentID: {e}"))?;
                if let (Ok(u), Ok(t)) = (u32::try_from(user), u32::try_from(torrent)) {
                    catalog.tokens.insert((u, t));
                }
            }
            let rows = timed(limit, "load whitelist", sqlx::query(sql::load_whitelist(d)).fetch_all(&mut *c)).await?;
            for row in rows {
                let prefix: Option<String> = row.try_get(0).map_err(|e| format!("xbt_client_whitelist.peer_id: {e}"))?;
                if let Some(p) = prefix.filter(|p| !p.is_empty()) {
                    catalog.whitelist.push(p.into_bytes().into_boxed_slice());
                }
            }
        });
        Ok(catalog)
    }
}
