//! Certificates: generating serving certificates (`generate`), checking any TLS Secret
//! (`check`), selfheal's own self-managed webhook certificate (`selfcert`), and the reloadable
//! serving certificate rustls asks for on every handshake (`serving`). Nothing here imports
//! `webhook`: the webhook uses certs, not the other way round.

pub mod check;
pub mod generate;
pub mod selfcert;
pub mod serving;
