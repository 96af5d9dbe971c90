//! Validating gossip before gossipsub forwards it.
//!
//! gossipsub runs with `validate_messages()`: a message is forwarded only
//! after the node reports it valid, and one reported invalid costs its sender
//! peer score (see [`super::scoring`]). Checks that need nothing but the
//! message (decoding, the ref's name, its signature, that its origin is its
//! publisher) run in the network task; the version and clock bounds need the
//! store, so a ref update travels to the service actor with a [`Verdict`] to
//! report when it is done.

use libp2p::{
    PeerId,
    gossipsub::{MessageAcceptance, MessageId},
};
use mass_protocol::{rpc::RefUpdate, storage::validate_ref_name};
use tokio::sync::mpsc;

use super::{client::Command, identity, quota::Permit};

/// Refs refused on sight: a bad name, an entry of another origin than the
/// peer that published it (the refs topic carries each writer's own writes),
/// or a signature that does not verify.
pub fn check_ref_update(publisher: &PeerId, update: &RefUpdate) -> Result<(), String> {
    validate_ref_name(&update.name)?;
    if update.entry.origin != publisher.to_string() {
        return Err(format!(
            "entry v{} of {} names {} as its origin but was published by {publisher}",
            update.entry.version, update.name, update.entry.origin
        ));
    }
    identity::verify_ref_entry(&update.name, &update.entry)
}

/// The pending outcome of one gossiped message. Reporting it hands the
/// outcome to gossipsub; dropping it unreported counts as "ignore" (no
/// forwarding, no penalty), so a lost verdict can never be held against an
/// honest peer. Holds the publisher's validation slot until then.
#[derive(Debug)]
pub struct Verdict {
    id: MessageId,
    propagation_source: PeerId,
    commands: Option<mpsc::Sender<Command>>,
    _slot: Permit<PeerId>,
}

impl Verdict {
    pub(crate) fn new(
        id: MessageId,
        propagation_source: PeerId,
        commands: mpsc::Sender<Command>,
        slot: Permit<PeerId>,
    ) -> Self {
        Self { id, propagation_source, commands: Some(commands), _slot: slot }
    }

    /// Reports the outcome to the network task.
    pub async fn report(mut self, acceptance: MessageAcceptance) {
        if let Some(commands) = self.commands.take() {
            let _ = commands.send(self.command(acceptance)).await;
        }
    }

    fn command(&self, acceptance: MessageAcceptance) -> Command {
        Command::ReportGossip { id: self.id.clone(), source: self.propagation_source, acceptance }
    }
}

impl Drop for Verdict {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.take() {
            let _ = commands.try_send(self.command(MessageAcceptance::Ignore));
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;
    use mass_protocol::storage::RefEntry;

    use super::*;

    fn signed(key: &Keypair, name: &str, origin: PeerId) -> RefUpdate {
        let mut entry =
            RefEntry { version: 1, target: None, clock: 1, origin: origin.to_string(), set_at: 0, signature: vec![] };
        entry.signature = key.sign(&entry.signed_bytes(name)).unwrap();
        RefUpdate { name: name.into(), entry }
    }

    #[test]
    fn a_publishers_own_signed_entry_passes() {
        let key = Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        check_ref_update(&me, &signed(&key, "model/x", me)).unwrap();
    }

    #[test]
    fn forged_entries_are_refused_with_the_reason() {
        let (key, other) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let (me, them) = (key.public().to_peer_id(), other.public().to_peer_id());
        // Claims another origin (signed by the publisher, or by nobody).
        let err = check_ref_update(&me, &signed(&key, "model/x", them)).unwrap_err();
        assert!(err.contains("published by"), "{err}");
        // Unsigned.
        let mut unsigned = signed(&key, "model/x", me);
        unsigned.entry.signature.clear();
        assert!(check_ref_update(&me, &unsigned).unwrap_err().contains("not signed"));
        // Signature of another key.
        let bad = signed(&other, "model/x", me);
        assert!(check_ref_update(&me, &bad).unwrap_err().contains("not signed by its origin"));
        // A name that is not a ref name.
        assert!(check_ref_update(&me, &signed(&key, "nonsense", me)).is_err());
    }

    #[tokio::test]
    async fn an_unreported_verdict_reports_ignore() {
        let (tx, mut rx) = mpsc::channel(4);
        let quota = super::super::quota::Quota::new(4, 4);
        let peer = PeerId::random();
        let verdict = Verdict::new(MessageId::new(b"m"), peer, tx.clone(), quota.try_admit(peer).unwrap());
        drop(verdict);
        assert!(matches!(rx.recv().await, Some(Command::ReportGossip { acceptance: MessageAcceptance::Ignore, .. })));
        assert_eq!(quota.in_progress(), 0, "the slot is free again");
        let verdict = Verdict::new(MessageId::new(b"n"), peer, tx, quota.try_admit(peer).unwrap());
        verdict.report(MessageAcceptance::Reject).await;
        assert!(matches!(rx.recv().await, Some(Command::ReportGossip { acceptance: MessageAcceptance::Reject, .. })));
        assert!(rx.try_recv().is_err(), "reported once");
    }
}
