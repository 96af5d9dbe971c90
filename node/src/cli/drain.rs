//! `mass node drain`: a node hands its blobs, serving replicas and jobs to
//! the other nodes, then exits; this shows how far it got until it is gone.

use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mass_protocol::api::{DrainState, DrainStatus};

use super::exit::bad_input;

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub node: super::NodeArgs,
    /// Ask for the drain and return at once instead of following it.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn run(args: DrainArgs) -> anyhow::Result<()> {
    if args.node.urls.len() != 1 {
        return Err(bad_input!("mass node drain takes exactly one --node: the node to drain"));
    }
    let client = args.node.client()?;
    let status = client.drain().await?;
    if args.no_wait {
        println!("{}", line(&status));
        return Ok(());
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut last = status;
    loop {
        bar.set_message(line(&last));
        if last.state == DrainState::Drained {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        match client.drain_status().await {
            Ok(status) => last = status,
            // The node exits once drained: silence after it said all was
            // handed off is the end of the drain.
            Err(mass_sdk::Error::Unreachable { .. }) if handed_everything_off(&last) => break,
            Err(e @ mass_sdk::Error::Unreachable { .. }) => {
                bar.finish_and_clear();
                return Err(anyhow::Error::new(e)
                    .context(format!("the node stopped answering before its drain was over (last: {})", line(&last))));
            }
            Err(e) => return Err(e.into()),
        }
    }
    bar.finish_and_clear();
    println!(
        "drained {}: {} of {} blobs shown by their new homes, in {:.1}s; the node has left the mesh",
        args.node.urls[0],
        last.handed_off,
        last.blobs,
        last.elapsed_ms as f64 / 1000.0
    );
    if let Some(gave_up) = last.waiting_for.as_deref().filter(|w| w.contains("timed out")) {
        eprintln!("warning: the drain did not finish: {gave_up}");
    }
    Ok(())
}

/// Whether the node was past handing off when last heard from.
fn handed_everything_off(status: &DrainStatus) -> bool {
    matches!(status.state, DrainState::Leaving | DrainState::Drained)
}

/// One line of progress.
fn line(status: &DrainStatus) -> String {
    let state = status.state.name();
    let mut text = format!(
        "{state}: {}/{} blobs handed off, {} peers up, {} tasks running, {} drives",
        status.handed_off, status.blobs, status.peers_up, status.working, status.driving
    );
    if let Some(waiting) = &status.waiting_for {
        text.push_str(&format!("; waiting for {waiting}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_says_what_the_drain_waits_for() {
        let status = DrainStatus {
            state: DrainState::Draining,
            blobs: 12,
            handed_off: 7,
            peers_up: 3,
            working: 1,
            driving: 0,
            waiting_for: Some("1 pieces of work still running here".into()),
            elapsed_ms: 1500,
        };
        let text = line(&status);
        assert!(text.starts_with("draining: 7/12 blobs handed off, 3 peers up"), "{text}");
        assert!(text.ends_with("waiting for 1 pieces of work still running here"), "{text}");
    }
}
