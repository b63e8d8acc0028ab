//! Node adverts (node proxy: `NodeAdvert { id, addrs, version, created, sig }`)
//! and transport-named addresses.
//!
//! Acceptance rule (docs/protocol.md 10.5): an advert for node X is accepted
//! only when it arrives over a link whose handshake proved X's key, and only
//! if its version is newer than the one held. Adverts carry no signature yet
//! (X25519 keys cannot sign); `sig` is reserved and must be empty.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::handshake::NodeId;
use crate::wire::{MultiCell, Value, WireConfig, encode, to_value};

/// Where a node can be reached; the scheme names the transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `tcp://host:port`.
    Tcp(SocketAddr),
    /// A transport this build does not know, kept as written.
    Other(String),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::Other(s) => f.write_str(s),
        }
    }
}

/// An address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad address {0:?}: expected tcp://IP:PORT or IP:PORT")]
pub struct BadAddress(pub String);

impl std::str::FromStr for Address {
    type Err = BadAddress;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("tcp://").unwrap_or(s);
        if let Ok(a) = rest.parse::<SocketAddr>() {
            return Ok(Address::Tcp(a));
        }
        if s.contains("://") && !s.starts_with("tcp://") {
            return Ok(Address::Other(s.to_string()));
        }
        Err(BadAddress(s.to_string()))
    }
}

/// A node's self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAdvert {
    /// The node.
    pub id: NodeId,
    /// Where it listens.
    pub addrs: Vec<Address>,
    /// Grows with every change; the newest version wins.
    pub version: u64,
    /// When this version was made (ms since the Unix epoch).
    pub created_ms: u64,
    /// Reserved for a signature; empty.
    pub sig: Bytes,
}

/// Why a received advert was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertError {
    /// The bytes are not a valid advert encoding.
    #[error("advert does not decode: {0}")]
    Malformed(&'static str),
    /// The advert names another node than the link's proven peer.
    #[error("advert for {claimed} arrived over the link of {peer}")]
    WrongNode {
        /// The node the advert describes.
        claimed: NodeId,
        /// The node the link authenticated.
        peer: NodeId,
    },
}

impl NodeAdvert {
    /// Encodes as `[id, [addr ...], version, created, sig]` (multi-cell).
    pub fn encode(&self, cfg: &WireConfig) -> Bytes {
        let v = Value::Vector(vec![
            Value::blob(self.id.0.to_vec()),
            Value::Vector(self.addrs.iter().map(|a| Value::string(&a.to_string())).collect()),
            Value::Long(self.version.min(i64::MAX as u64) as i64),
            Value::Long(self.created_ms.min(i64::MAX as u64) as i64),
            Value::Blob(self.sig.clone()),
        ]);
        // Adverts are a handful of short strings: always encodable.
        encode(&v, cfg).map(|e| e.to_bytes()).unwrap_or_default()
    }

    /// Decodes an advert received from `peer`, enforcing the acceptance rule.
    pub fn decode_from(peer: NodeId, bytes: Bytes, cfg: &WireConfig) -> Result<NodeAdvert, AdvertError> {
        let mc = MultiCell::decode(bytes, cfg).map_err(|_| AdvertError::Malformed("cells"))?;
        let Ok(Value::Vector(f)) = to_value(&mc) else { return Err(AdvertError::Malformed("not a vector")) };
        let [Value::Blob(id), Value::Vector(addrs), Value::Long(version), Value::Long(created), Value::Blob(sig)] =
            f.as_slice()
        else {
            return Err(AdvertError::Malformed("fields"));
        };
        let id: [u8; 32] = id.as_ref().try_into().map_err(|_| AdvertError::Malformed("id length"))?;
        let mut out = Vec::with_capacity(addrs.len());
        for a in addrs {
            let Value::String(s) = a else { return Err(AdvertError::Malformed("address")) };
            let s = std::str::from_utf8(s).map_err(|_| AdvertError::Malformed("address"))?;
            out.push(s.parse().map_err(|_| AdvertError::Malformed("address"))?);
        }
        if *version < 0 || *created < 0 || !sig.is_empty() {
            return Err(AdvertError::Malformed("field range"));
        }
        let advert = NodeAdvert {
            id: NodeId(id),
            addrs: out,
            version: *version as u64,
            created_ms: *created as u64,
            sig: Bytes::new(),
        };
        if advert.id != peer {
            return Err(AdvertError::WrongNode { claimed: advert.id, peer });
        }
        Ok(advert)
    }

    /// The first TCP address, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.addrs.iter().find_map(|a| match a {
            Address::Tcp(s) => Some(*s),
            Address::Other(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_acceptance_rule() {
        let cfg = WireConfig::default();
        let a = NodeAdvert {
            id: NodeId([5; 32]),
            addrs: vec!["tcp://127.0.0.1:7000".parse().unwrap(), "quic://[::1]:7001".parse().unwrap()],
            version: 3,
            created_ms: 1_750_000_000_000,
            sig: Bytes::new(),
        };
        let b = a.encode(&cfg);
        assert_eq!(NodeAdvert::decode_from(a.id, b.clone(), &cfg).unwrap(), a);
        assert_eq!(
            NodeAdvert::decode_from(NodeId([6; 32]), b, &cfg).unwrap_err(),
            AdvertError::WrongNode { claimed: a.id, peer: NodeId([6; 32]) }
        );
        assert!(NodeAdvert::decode_from(a.id, Bytes::from_static(&[0x10]), &cfg).is_err());
        assert_eq!(a.tcp_addr(), Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!("10.0.0.1:80".parse::<Address>().unwrap().to_string(), "tcp://10.0.0.1:80");
        assert!("nonsense".parse::<Address>().is_err());
    }
}
