//! `shardwire cells inspect`: decode a multi-cell encoding (or a message with
//! its type byte) and report its top cell, branches and missing refs.

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Subcommand};
use shardwire::wire::{HashAlg, Message, MultiCell, WireConfig};

use crate::EXIT_BAD_INPUT;

#[derive(Subcommand)]
pub enum CellsCmd {
    /// Decode and validate a multi-cell encoding; print its top cell, branch
    /// count, missing refs and cell sizes.
    Inspect(InspectArgs),
}

#[derive(Args)]
pub struct InspectArgs {
    /// File holding the encoding.
    file: PathBuf,
    /// Hash that gives value IDs.
    #[arg(long, default_value = "blake3", value_parser = ["blake3", "sha3-256"])]
    hash: String,
    /// Largest cell encoding accepted, in bytes (Convex 0.8 data needs 16383).
    #[arg(long, default_value_t = shardwire::wire::cell::DEFAULT_MAX_CELL)]
    max_cell: usize,
    /// The file is a message: a type byte, then the multi-cell payload.
    #[arg(long)]
    message: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: CellsCmd) -> ExitCode {
    match cmd {
        CellsCmd::Inspect(args) => inspect(args),
    }
}

fn inspect(args: InspectArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let data = match std::fs::read(&args.file) {
        Ok(d) => Bytes::from(d),
        Err(e) => {
            eprintln!("error: {name}: cannot read: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let hash: HashAlg = args.hash.parse().unwrap_or_default();
    let cfg = WireConfig { max_cell: args.max_cell, hash, ..WireConfig::default() };
    let total = data.len();
    let decoded = if args.message {
        Message::decode(data, &cfg).map(|m| (Some(m.ty()), m.payload().clone()))
    } else {
        MultiCell::decode(data, &cfg).map(|mc| (None, mc))
    };
    let (ty, mc) = match decoded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {name}: at byte {}: {}", e.offset, e.kind);
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let top = mc.top();
    let top_id = mc.top_id(hash);
    let (min_cell, max_cell) = mc.cell_size_range();
    let missing: Vec<String> = mc.missing().iter().map(|id| id.to_hex()).collect();
    if args.json {
        let mut obj = serde_json::json!({
            "top_tag": format!("{:02x}", top.tag()),
            "top_id": top_id.to_hex(),
            "branch_cells": mc.branch_count(),
            "missing": missing,
            "bytes": total,
            "min_cell": min_cell,
            "max_cell": max_cell,
        });
        if let Some(ty) = ty {
            obj["type"] = serde_json::json!(ty.name());
            obj["type_byte"] = serde_json::json!(ty.to_byte());
        }
        println!("{obj}");
    } else {
        println!("file          {name} ({total} bytes, hash {})", hash.name());
        if let Some(ty) = ty {
            println!("message type  {} (0x{:02x})", ty.name(), ty.to_byte());
        }
        println!("top cell      tag 0x{:02x}, {} bytes", top.tag(), top.len());
        println!("top value ID  {top_id}");
        println!("branch cells  {}", mc.branch_count());
        println!("cell sizes    smallest {min_cell} bytes, largest {max_cell} bytes");
        if missing.is_empty() {
            println!("missing refs  none (complete)");
        } else {
            println!("missing refs  {} (partial):", missing.len());
            for m in &missing {
                println!("  {m}");
            }
        }
    }
    ExitCode::SUCCESS
}
