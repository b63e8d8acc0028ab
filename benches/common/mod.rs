//! Work more than one bench measures.

use std::hint::black_box;

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::Random;

/// The X25519 work of one Noise IK handshake, both sides together: two
/// ephemeral key generations and eight DH operations (es, ss, ee, se on
/// each side). The floor under a handshake's cost.
pub struct X25519Work {
    resolver: DefaultResolver,
    rng: Box<dyn Random>,
    peer: Vec<u8>,
    out: [u8; 32],
}

impl X25519Work {
    pub fn new() -> Self {
        let resolver = DefaultResolver;
        let mut rng = resolver.resolve_rng().unwrap();
        let peer = {
            let mut d = resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
            d.generate(&mut *rng).unwrap();
            d.pubkey().to_vec()
        };
        X25519Work { resolver, rng, peer, out: [0u8; 32] }
    }

    /// One handshake's worth.
    pub fn run(&mut self) {
        for _ in 0..2 {
            let mut d = self.resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
            d.generate(&mut *self.rng).unwrap();
            black_box(d.pubkey());
        }
        let mut d = self.resolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        d.set(&[7u8; 32]);
        for _ in 0..8 {
            d.dh(&self.peer, &mut self.out).unwrap();
            black_box(&self.out);
        }
    }
}
