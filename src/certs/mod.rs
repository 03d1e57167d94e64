//! Certificates: generating serving certificates (`generate`), checking any TLS Secret
//! (`check`), and selfheal's own self-managed webhook certificate (`selfcert`).

pub mod check;
pub mod generate;
pub mod selfcert;
