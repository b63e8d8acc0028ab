use bytes::Bytes;
use shardwire::wire::*;
fn main() {
    let cfg = WireConfig::convex();
    let data = Bytes::from(std::fs::read("testdata/genesis.cad3").unwrap());
    let mc = MultiCell::decode(data.clone(), &cfg).unwrap();
    let enc = encode(&to_value(&mc).unwrap(), &cfg).unwrap();
    println!("reencoded branches {}", enc.branches.len());
    println!("{:?}", MultiCell::decode(data, &WireConfig { hash: HashAlg::Blake3, ..cfg }).err());
}
