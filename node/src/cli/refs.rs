//! `mass ref`: mutable names for blobs, with history and rollback.

use clap::Subcommand;

use super::NodeArgs;

#[derive(Debug, Subcommand)]
pub enum RefCommand {
    /// Point NAME (e.g. model/digits) at a blob id, as a new version.
    Set {
        name: String,
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print the current version of a ref.
    Get {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print every version of a ref, oldest first.
    History {
        name: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Make a new version that points where VERSION pointed.
    Rollback {
        name: String,
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List every ref.
    Ls(NodeArgs),
}

pub async fn run(command: RefCommand) -> anyhow::Result<()> {
    match command {
        RefCommand::Set { name, id, node } => {
            let view = node.client()?.set_ref(&name, &id).await?;
            println!("{} v{} -> {}", view.name, view.version, view.target);
        }
        RefCommand::Get { name, node } => {
            let view = node.client()?.get_ref(&name).await?;
            println!("{} v{} -> {}", view.name, view.version, view.target);
        }
        RefCommand::History { name, node } => {
            let record = node.client()?.ref_history(&name).await?;
            for entry in record.history {
                let target = entry.target.map(|t| t.to_string()).unwrap_or_else(|| "(deleted)".into());
                println!("v{}  {}  clock {}  by {}", entry.version, target, entry.clock, entry.origin);
            }
        }
        RefCommand::Rollback { name, to, node } => {
            let view = node.client()?.rollback_ref(&name, to).await?;
            println!("{} v{} -> {} (as v{to})", view.name, view.version, view.target);
        }
        RefCommand::Ls(node) => {
            for view in node.client()?.refs().await? {
                println!("{}  v{}  {}", view.name, view.version, view.target);
            }
        }
    }
    Ok(())
}
