//! berth's embedded DNS server (the `berth-dns` binary) and, as a library, its DNS
//! message code, which the tests use as a client and as an upstream resolver.

pub mod message;
