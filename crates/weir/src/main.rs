//! `weir`: the command line. Parses, wires and prints; the work is in the library crates.

mod server;

use clap::{Parser, Subcommand};

/// Weir: a Kafka-compatible message broker.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker. With no arguments: a one-node cluster, broker id 0, on 127.0.0.1:9092,
    /// with its data in ./weir-data.
    Server(Box<server::ServerArgs>),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(*args),
    };
    if let Err(e) = result {
        eprintln!("weir: {e:#}");
        std::process::exit(1);
    }
}
