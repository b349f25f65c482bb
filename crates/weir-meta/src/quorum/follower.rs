//! How a broker that runs no voter (`process.roles=broker`) follows the metadata: it polls the
//! voters for the applied image, as KRaft brokers fetch the metadata log from the controllers.
//!
//! Each poll names the version this node holds; a voter answers as soon as it applies a newer
//! image (or after a second with nothing new), with the records that rebuild its image and its
//! view of the quorum. Only committed entries are ever applied by a voter, so any voter's image
//! is a true, if possibly older, state of the log: the follower takes an image only when it is
//! newer than its own, and polls the active controller while it knows which voter that is.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::network;
use super::transport::Net;
use super::{NodeId, QuorumView};
use crate::image::MetadataImage;

/// Longest one poll may take (the voter holds it for about a second).
const POLL_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after a failed poll before trying the next voter.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// After this many polls in a row with nothing new, ask another voter once: the one polled may
/// be cut off from the quorum and still believe it leads.
const IDLE_POLLS_BEFORE_SWITCH: u32 = 5;

/// A running follower of the metadata image.
pub struct MetadataFollower {
    voters: BTreeMap<NodeId, String>,
    image: watch::Receiver<Arc<MetadataImage>>,
    view: Arc<Mutex<QuorumView>>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MetadataFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataFollower")
            .field("version", &self.image.borrow().version)
            .finish_non_exhaustive()
    }
}

impl MetadataFollower {
    /// Starts following the quorum of `voters`, over mutual TLS with `tls`.
    pub fn start(
        voters: BTreeMap<NodeId, String>,
        tls: Option<std::sync::Arc<super::QuorumTls>>,
    ) -> MetadataFollower {
        MetadataFollower::start_on(voters, Net::from(tls))
    }

    pub(crate) fn start_on(voters: BTreeMap<NodeId, String>, net: Net) -> MetadataFollower {
        let (tx, image) = watch::channel(Arc::new(MetadataImage::default()));
        let view = Arc::new(Mutex::new(QuorumView::default()));
        let task = tokio::spawn(follow(voters.clone(), net, tx, view.clone()));
        MetadataFollower {
            voters,
            image,
            view,
            task,
        }
    }

    /// Every voter with its address.
    pub fn voters(&self) -> &BTreeMap<NodeId, String> {
        &self.voters
    }

    /// The newest image received.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// Follows the image as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// The quorum as the active controller last described it (no leader after a whole round of
    /// voters failed to answer).
    pub fn view(&self) -> QuorumView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops polling.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for MetadataFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(
    voters: BTreeMap<NodeId, String>,
    net: Net,
    tx: watch::Sender<Arc<MetadataImage>>,
    view: Arc<Mutex<QuorumView>>,
) {
    let ids: Vec<NodeId> = voters.keys().copied().collect();
    if ids.is_empty() {
        return;
    }
    let mut round = 0usize;
    let mut target: Option<NodeId> = None;
    let mut idle = 0u32;
    let mut failures = 0usize;
    loop {
        let id = target.unwrap_or(ids[round % ids.len()]);
        let Some(addr) = voters.get(&id) else {
            target = None;
            round += 1;
            continue;
        };
        let since = tx.borrow().version;
        match network::fetch_image(net.clone(), addr, since, POLL_TIMEOUT).await {
            Ok(reply) => {
                if let Some(records) = reply.records.filter(|_| reply.version > since) {
                    let mut image = MetadataImage::default();
                    for r in &records {
                        image.apply(r);
                    }
                    image.version = reply.version;
                    tx.send_replace(Arc::new(image));
                    idle = 0;
                } else {
                    idle += 1;
                }
                // Poll the active controller next when this voter knows of one.
                target = reply
                    .view
                    .leader
                    .filter(|l| voters.contains_key(l))
                    .or(Some(id));
                if idle >= IDLE_POLLS_BEFORE_SWITCH {
                    idle = 0;
                    round = ids.iter().position(|x| *x == id).unwrap_or(round) + 1;
                    target = None;
                }
                // Only the leader's view has every voter's progress: keep the leader's, or one
                // that names no leader at all.
                if reply.view.leader == Some(id) || reply.view.leader.is_none() {
                    *view.lock().unwrap_or_else(|p| p.into_inner()) = reply.view;
                }
                failures = 0;
            }
            Err(e) => {
                tracing::debug!(voter = id, error = %e, "metadata poll failed");
                target = None;
                round += 1;
                failures += 1;
                // No voter answered for a whole round: the leader named last may be gone.
                if failures >= ids.len() {
                    view.lock().unwrap_or_else(|p| p.into_inner()).leader = None;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}
