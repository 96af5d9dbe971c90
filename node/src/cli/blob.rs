//! `mass blob`: put, get, list and unpin content-addressed blobs.

use std::path::PathBuf;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use super::NodeArgs;

#[derive(Debug, Subcommand)]
pub enum BlobCommand {
    /// Store a file as a blob (streamed); prints its id.
    Put {
        file: PathBuf,
        /// Let GC remove the blob once no ref points at it.
        #[arg(long)]
        no_pin: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Fetch a blob by id into a file (verified against the id).
    Get {
        id: String,
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List the blobs stored on a node.
    Ls(NodeArgs),
    /// Unpin a blob everywhere; GC then removes it where no ref keeps it.
    Rm {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}").expect("valid template"),
    );
    bar
}

pub async fn run(command: BlobCommand) -> anyhow::Result<()> {
    match command {
        BlobCommand::Put { file, no_pin, node } => {
            let size = std::fs::metadata(&file)
                .map_err(|e| super::exit::bad_input!("cannot read {}: {e}", file.display()))?
                .len();
            let progress = bar(size);
            let shown = progress.clone();
            let info = node.client()?.put_blob_file(&file, !no_pin, move |sent| shown.set_position(sent)).await?;
            progress.finish_and_clear();
            println!("{}  {} bytes", info.id, info.size);
        }
        BlobCommand::Get { id, output, node } => {
            let progress = bar(0);
            let received = node
                .client()?
                .get_blob_to_file(&id, &output, |done, total| {
                    progress.set_length(total);
                    progress.set_position(done);
                })
                .await?;
            progress.finish_and_clear();
            println!("wrote {received} bytes to {}", output.display());
        }
        BlobCommand::Ls(node) => {
            for blob in node.client()?.list_blobs().await? {
                println!("{}  {}", blob.id, blob.size);
            }
        }
        BlobCommand::Rm { id, node } => {
            node.client()?.unpin_blob(&id).await?;
            println!("unpinned {id}");
        }
    }
    Ok(())
}
