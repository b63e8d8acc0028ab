//! `shardwire`: the command-line tool. Every subcommand uses only the
//! library's public API, so each is also an example of it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cells;
mod demo;
mod keygen;
mod latency;
mod loadgen;
mod measure;
mod node;
mod rpc;
mod services;
mod units;

/// shardwire: node-to-node networking for validator nodes.
#[derive(Parser)]
#[command(name = "shardwire", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a 3-node cluster in this process under mixed load, cut a link,
    /// and show that nothing is lost (start here).
    Demo(demo::DemoArgs),
    /// Work with CAD3 cell encodings.
    #[command(subcommand)]
    Cells(cells::CellsCmd),
    /// Make a new node identity (static X25519 keypair) and print its NodeId.
    Keygen(keygen::KeygenArgs),
    /// Run a node until SIGTERM or SIGINT.
    Node(node::NodeArgs),
    /// Make one RPC call and print its result (exit 1 on a typed error).
    Rpc(rpc::RpcArgs),
    /// Generate load against nodes and report throughput and latency.
    Loadgen(loadgen::LoadgenArgs),
    /// Measure ping-pong round trips against an echo node.
    Latency(latency::LatencyArgs),
}

/// Exit code for bad input (bad flags, unreadable or invalid data).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Raises the open-file limit as far as allowed: a node holds two
/// descriptors per link, so the usual 1,024 caps it near 500 links.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let want = lim.rlim_max.max(1 << 20);
        let raised = libc::rlimit { rlim_cur: want, rlim_max: want };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            // Not privileged: the soft limit up to the hard one.
            let soft = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            libc::setrlimit(libc::RLIMIT_NOFILE, &soft);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    raise_nofile_limit();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Cells(cmd) => cells::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Node(args) => node::run(args),
        Command::Rpc(args) => rpc::run(args),
        Command::Loadgen(args) => loadgen::run(args),
        Command::Latency(args) => latency::run(args),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
