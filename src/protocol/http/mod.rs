//! HTTP tracker protocol (BEP 3, 7, 23, 48, 21, 24), pure: request heads,
//! query strings, routes, client addresses, bencoded answers.

pub mod bencode;
pub mod client_ip;
mod decimal;
pub mod head;
pub mod query;
pub mod route;
