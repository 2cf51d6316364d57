use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// swiftfed operator: reconciles ClusterFederation resources into routing tables and pushes them
/// to the swiftfed sidecars beside Swift proxies.
#[derive(Parser, Debug)]
#[command(name = "swiftfed-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the ClusterFederation CustomResourceDefinition (YAML).
    Crdgen,
    /// Render the routing table for federations in a file, offline (for the sidecar's --config).
    Render {
        /// YAML file with ClusterFederation documents (`---` separated); Secret documents in it
        /// are used for credentials too.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Directory with one sub-directory per Secret, one file per key (like a mounted Secret).
        #[arg(long)]
        secret_dir: Option<PathBuf>,
        /// Namespace the federations are rendered for, when they do not name one.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Revision of the rendered table.
        #[arg(long, default_value_t = 1)]
        revision: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crdgen => swiftfed_operator::cli::crdgen(),
        Command::Render {
            file,
            secret_dir,
            namespace,
            revision,
        } => swiftfed_operator::cli::render(&file, secret_dir.as_deref(), &namespace, revision),
    };
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("swiftfed-operator: {e}");
            ExitCode::FAILURE
        }
    }
}
