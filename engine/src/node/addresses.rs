//! Where hosts can be reached. Each host signs a record of its peer address;
//! records spread by gossip ([`super::messages::NodeMessage::Addresses`]),
//! and a host that must reach another it has no connection to (a task's
//! intermediary or executor, a checker's executor) dials the address of the
//! newest record it holds. The peer handshake authenticates whoever answers,
//! so a stale or false address costs a failed dial, never a wrong peer.
//!
//! Only records of hosts registered on chain are kept, one per host: the book
//! is bounded by the roster, and a record is verified once, when it is newer
//! than the one held.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use gonka_kernels::encoding::tagged_hash;
use rkyv::{Archive, Deserialize, Serialize};

use crate::crypto::{CryptoError, Domain, HostKey, PublicKeyBytes, SignatureBytes, verify};

/// Most records in one message.
pub const MAX_ADDRESSES: usize = 64;

/// A host's signed statement "I accept peer connections at `ip:port`", as of
/// `issued_ms` (Unix time; a newer record replaces an older one).
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostAddress {
    /// The host's key.
    pub key: PublicKeyBytes,
    /// IPv6, or IPv4 mapped into IPv6.
    pub ip: [u8; 16],
    /// TCP port.
    pub port: u16,
    /// When the host signed it, in milliseconds since the Unix epoch.
    pub issued_ms: u64,
    /// The host's signature ([`Domain::HostAddress`]) over the fields above.
    pub signature: SignatureBytes,
}

impl HostAddress {
    /// `key`'s record of `addr` as of `issued_ms`.
    pub fn sign(key: &HostKey, addr: SocketAddr, issued_ms: u64) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let public = key.public_key();
        let signature = key.sign(Domain::HostAddress, &signed_bytes(&public, &ip, addr.port(), issued_ms));
        Self { key: public, ip, port: addr.port(), issued_ms, signature }
    }

    /// The address it states.
    pub fn addr(&self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
        SocketAddr::new(ip, self.port)
    }

    /// Checks the signature against the record's key.
    pub fn verify(&self) -> Result<(), CryptoError> {
        let msg = signed_bytes(&self.key, &self.ip, self.port, self.issued_ms);
        verify(Domain::HostAddress, &self.key, &msg, &self.signature)
    }
}

fn signed_bytes(key: &PublicKeyBytes, ip: &[u8; 16], port: u16, issued_ms: u64) -> [u8; 32] {
    tagged_hash("gonka/host-address", &[key, ip, &port.to_le_bytes(), &issued_ms.to_le_bytes()])
}

/// The newest verified record of each registered host.
#[derive(Debug, Default)]
pub struct AddressBook {
    records: HashMap<PublicKeyBytes, HostAddress>,
}

impl AddressBook {
    /// Keeps the records that are newer than the ones held, belong to a
    /// host for which `is_host` holds, and verify; returns those kept (to
    /// pass on). Anything else is dropped without a verification.
    pub fn take(
        &mut self,
        records: impl IntoIterator<Item = HostAddress>,
        is_host: impl Fn(&PublicKeyBytes) -> bool,
    ) -> Vec<HostAddress> {
        let mut kept = Vec::new();
        for r in records {
            let newer = self.records.get(&r.key).is_none_or(|held| held.issued_ms < r.issued_ms);
            if newer && is_host(&r.key) && r.verify().is_ok() {
                self.records.insert(r.key, r);
                kept.push(r);
            }
        }
        kept
    }

    /// Where `key` said it can be reached, if it did.
    pub fn addr(&self, key: &[u8]) -> Option<SocketAddr> {
        let key: &PublicKeyBytes = key.try_into().ok()?;
        self.records.get(key).map(HostAddress::addr)
    }

    /// Every record held, in messages of at most [`MAX_ADDRESSES`].
    pub fn chunks(&self) -> Vec<Vec<HostAddress>> {
        let mut all: Vec<HostAddress> = self.records.values().copied().collect();
        all.sort_by_key(|r| r.key);
        all.chunks(MAX_ADDRESSES).map(<[HostAddress]>::to_vec).collect()
    }

    /// How many hosts have a record here.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no host has a record here.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> HostKey {
        HostKey::from_ikm(&[n; 32])
    }

    #[test]
    fn records_round_trip_both_address_families_and_verify() {
        for addr in ["127.0.0.1:9000", "[2001:db8::7]:443"] {
            let addr: SocketAddr = addr.parse().expect("address");
            let r = HostAddress::sign(&key(1), addr, 5);
            assert_eq!(r.addr(), addr);
            r.verify().expect("its own signature");
        }
    }

    #[test]
    fn the_book_keeps_newer_verified_records_of_hosts_only() {
        let (a, b) = (key(1), key(2));
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let is_a = |k: &PublicKeyBytes| *k == a.public_key();
        let mut book = AddressBook::default();
        let first = HostAddress::sign(&a, addr(1), 10);
        assert_eq!(book.take([first], is_a), vec![first]);
        assert_eq!(book.addr(&a.public_key()), Some(addr(1)));
        assert!(book.take([first], is_a).is_empty(), "the same record again is not news");
        assert!(book.take([HostAddress::sign(&a, addr(2), 9)], is_a).is_empty(), "an older one is dropped");
        assert!(book.take([HostAddress::sign(&b, addr(3), 10)], is_a).is_empty(), "not a host");
        let mut forged = HostAddress::sign(&a, addr(4), 11);
        forged.port = 5;
        assert!(book.take([forged], is_a).is_empty(), "a changed field breaks the signature");
        let mut stolen = HostAddress::sign(&b, addr(6), 12);
        stolen.key = a.public_key();
        assert!(book.take([stolen], is_a).is_empty(), "another key's signature");
        assert_eq!(book.addr(&a.public_key()), Some(addr(1)));
        let moved = HostAddress::sign(&a, addr(7), 20);
        assert_eq!(book.take([moved], is_a), vec![moved]);
        assert_eq!(book.addr(&a.public_key()), Some(addr(7)));
        assert_eq!(book.len(), 1);
        assert_eq!(book.chunks(), vec![vec![moved]]);
        assert_eq!(book.addr(b"short"), None);
    }
}
