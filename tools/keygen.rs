//! `shardwire keygen --out FILE`: a new static keypair, written with mode
//! 0600; prints the NodeId.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use shardwire::handshake::Identity;

use crate::EXIT_BAD_INPUT;

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the key file (must not exist yet).
    #[arg(long)]
    out: PathBuf,
    /// Print the NodeId as JSON: {"node_id": "<hex>", "key_file": "<path>"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: KeygenArgs) -> ExitCode {
    let id = Identity::generate();
    if let Err(e) = id.save(&args.out) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"node_id": id.node_id().to_hex(), "key_file": args.out.display().to_string()})
        );
    } else {
        println!("{}", id.node_id());
    }
    ExitCode::SUCCESS
}
