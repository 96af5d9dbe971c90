//! Refs any node can read as soon as a client was told they exist.
//!
//! Gossip spreads a ref write to every node, but a client that writes
//! through one node and reads through another at once can outrun it. So a
//! write is acknowledged once `copies` nodes hold the entry (the writer,
//! then the peers ranked first for the ref's name, as blob homes are
//! ranked), and a node that does not know a name asks peers (those same
//! homes first) before it answers "not found". What a peer sends is checked
//! and merged as a gossiped entry is: signed by its origin, within bounds.

use std::time::{Duration, Instant};

use futures::{StreamExt, stream::FuturesUnordered};
use libp2p::PeerId;
use mass_protocol::{
    ContentId,
    rpc::{Request, Response},
    storage::{RefEntry, RefRecord},
};
use tracing::debug;

use crate::{mesh::Mesh, replication::homes};

/// How long a write waits for its copies, and a read for peers' answers.
pub const WAIT: Duration = Duration::from_secs(2);
/// How long a refresh before a driver's write waits: a stalled home not
/// yet seen down costs each checkpoint this much.
const REFRESH_WAIT: Duration = Duration::from_millis(500);
/// How long a write waits on the peers it asked before asking one more.
const NEXT_AFTER: Duration = Duration::from_millis(250);
/// Peers a node that does not know a name asks, at most.
pub const ASK: usize = 4;

/// Up peers ranked for ref `name`: the ones that should hold it first.
async fn ranked_peers(mesh: &Mesh, name: &str) -> Vec<PeerId> {
    let local = mesh.net.local_peer_id();
    let mut view = mesh.up_peers().await;
    view.push(local);
    let mut ranked = homes(&ContentId::of(name.as_bytes()), &view, view.len());
    ranked.retain(|p| *p != local);
    ranked
}

/// Has peers hold `entry` of ref `name` until `copies` nodes (this one
/// included) do, trying the next-ranked peer when one fails, for at most
/// [`WAIT`]. Returns how many nodes hold it: fewer than `copies` when the
/// mesh is smaller or peers did not answer in time.
pub async fn spread(mesh: &Mesh, name: &str, entry: &RefEntry, copies: usize) -> usize {
    let mut held = 1;
    let deadline = Instant::now() + WAIT;
    let mut candidates = ranked_peers(mesh, name).await.into_iter();
    let mut asking = FuturesUnordered::new();
    let ask = |peer: PeerId| {
        let request = Request::HoldRef { name: name.to_owned(), entry: entry.clone() };
        let left = deadline.saturating_duration_since(Instant::now());
        async move { (peer, mesh.net.request_within(peer, request, left).await) }
    };
    loop {
        while held + asking.len() < copies {
            let Some(peer) = candidates.next() else { break };
            asking.push(ask(peer));
        }
        if asking.is_empty() {
            break;
        }
        tokio::select! {
            Some((peer, answer)) = asking.next() => match answer {
                Ok(Response::Has(true)) => held += 1,
                other => debug!(%peer, name, ?other, "a peer did not take a copy of a ref"),
            },
            // A peer slow to answer (stalled, or hostile) gets company.
            () = tokio::time::sleep(NEXT_AFTER) => {
                if let Some(peer) = candidates.next() {
                    asking.push(ask(peer));
                }
            }
        }
        if held >= copies || Instant::now() >= deadline {
            break;
        }
    }
    held
}

/// Ref `name` as this node knows it or, when it does not, as peers do
/// (merged here first). `None`: no peer asked knows it either.
pub async fn find(mesh: &Mesh, name: &str) -> Result<Option<RefRecord>, String> {
    if let Some(record) = mesh.storage.get_ref(name.to_owned()).await.map_err(|e| e.to_string())? {
        return Ok(Some(record));
    }
    let peers: Vec<PeerId> = ranked_peers(mesh, name).await.into_iter().take(ASK).collect();
    ask_and_merge(mesh, name, peers, WAIT, true).await;
    mesh.storage.get_ref(name.to_owned()).await.map_err(|e| e.to_string())
}

/// Merges what the nodes that hold ref `name` (its first `copies - 1`
/// ranked peers, where acknowledged writes go) know of it: a driver reads
/// this before writing, so it sees a successor's writes that gossip has not
/// brought yet.
pub async fn refresh(mesh: &Mesh, name: &str) {
    let peers: Vec<PeerId> = ranked_peers(mesh, name).await.into_iter().take(mesh.ref_copies.max(2) - 1).collect();
    ask_and_merge(mesh, name, peers, REFRESH_WAIT, false).await;
}

/// Asks `peers` at once for ref `name` and merges each answer (checked as
/// a gossiped entry); with `first_only`, stops at the first that knew it.
async fn ask_and_merge(mesh: &Mesh, name: &str, peers: Vec<PeerId>, wait: Duration, first_only: bool) {
    let mut asking: FuturesUnordered<_> = peers
        .into_iter()
        .map(|peer| async move {
            (peer, mesh.net.request_within(peer, Request::GetRef { name: name.to_owned() }, wait).await)
        })
        .collect();
    while let Some((peer, answer)) = asking.next().await {
        let Ok(Response::Refs(records)) = answer else { continue };
        let mut merged = false;
        for record in records.into_iter().filter(|r| r.name == name) {
            // Oldest first, so each entry's version jump is from the one before.
            for entry in record.history {
                match mesh.accept_ref(name, entry).await {
                    Ok(_) => merged = true,
                    Err(e) => debug!(%peer, name, "refused a ref entry a peer sent: {e}"),
                }
            }
        }
        if merged && first_only {
            break;
        }
    }
}
