//! Voter-to-voter RPC: openraft's AppendEntries, Vote and InstallSnapshot (over TCP, or turmoil in tests); brokers'
//! operations for the active controller ([`ControllerOp`]); and the metadata image for brokers
//! that run no voter ([`ImageRequest`], a long poll).
//!
//! A request is `length: u32 BE | version: u8 | kind: u8 | JSON`; the answer is
//! `length: u32 BE | JSON` of `Result<response, RaftError>`. The version byte lets a newer voter
//! refuse (by closing the connection) what it cannot read; this is version 1. Frames are capped
//! at [`MAX_FRAME`]. One connection per peer carries one request at a time.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::controller::ActiveController;
use super::transport::{accept_tls, Conn, Listener, Net, QuorumTls};
use super::{NodeId, TypeConfig};
use crate::controller::{ControllerOp, ControllerReply};
use crate::MetaError;

/// The RPC version this build speaks.
pub(crate) const RPC_VERSION: u8 = 1;
/// Largest frame either side accepts (snapshots are sent in chunks well below this).
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Largest metadata snapshot a voter accepts from a peer.
pub(crate) const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

const KIND_APPEND: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_CONTROLLER: u8 = 4;
const KIND_IMAGE: u8 = 5;

/// How long a voter holds an image request open waiting for a newer image.
const IMAGE_LONG_POLL: Duration = Duration::from_millis(1000);

/// A broker-only node asks for the image when it is newer than `since`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct ImageRequest {
    pub since: u64,
}

/// The voter's applied image (as the records that rebuild it) when newer than asked for, and
/// what the voter knows of the quorum.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct ImageReply {
    pub version: u64,
    pub records: Option<Vec<crate::records::MetadataRecord>>,
    pub view: super::QuorumView,
}

async fn read_frame(stream: &mut Conn) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is too large"
        )));
    }
    // Grow only as bytes arrive: a length claim alone reserves nothing.
    let mut buf = Vec::new();
    (&mut *stream)
        .take(len as u64)
        .read_to_end(&mut buf)
        .await?;
    if buf.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(buf)
}

async fn write_frame(stream: &mut Conn, parts: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_FRAME {
        // The peer would refuse it; say so here, where it can be seen.
        tracing::warn!(
            len,
            "a quorum RPC frame is larger than {MAX_FRAME} bytes; not sent"
        );
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is too large"
        )));
    }
    let mut buf = Vec::with_capacity(len + 4);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    for p in parts {
        buf.extend_from_slice(p);
    }
    stream.write_all(&buf).await
}

/// Serves peers' RPCs for `raft`, brokers' operations for `controller` and image polls of
/// broker-only nodes until the task is dropped.
/// With `tls`, every connection is mutual TLS and served only once `admit` names its peer.
pub(crate) async fn serve(
    listener: Listener,
    tls: Option<std::sync::Arc<QuorumTls>>,
    raft: Raft<TypeConfig>,
    controller: std::sync::Arc<ActiveController>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "metadata quorum listener failed to accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let raft = raft.clone();
        let controller = controller.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = match tls {
                None => stream,
                Some(tls) => match accept_tls(&tls, stream).await {
                    Ok((stream, principal)) => {
                        tracing::debug!(%peer, %principal, "quorum peer admitted");
                        stream
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "quorum connection refused");
                        return;
                    }
                },
            };
            if let Err(e) = serve_connection(stream, raft, controller).await {
                tracing::debug!(%peer, error = %e, "quorum connection closed");
            }
        });
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> std::io::Result<T> {
    serde_json::from_slice(body).map_err(std::io::Error::other)
}

fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(std::io::Error::other)
}

/// One peer's request, decoded and checked, before anything acts on it.
pub(crate) enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    Controller(ControllerOp),
    Image(ImageRequest),
}

/// Decodes one frame (version byte, kind byte, JSON body). Anything it cannot read, or a
/// snapshot chunk past the size limit, is an error and closes the connection.
pub(crate) fn parse_rpc(frame: &[u8]) -> std::io::Result<Rpc> {
    let [version, kind, body @ ..] = frame else {
        return Err(std::io::Error::other("short frame"));
    };
    if *version != RPC_VERSION {
        return Err(std::io::Error::other(format!(
            "unknown RPC version {version}"
        )));
    }
    Ok(match *kind {
        KIND_APPEND => Rpc::Append(decode(body)?),
        KIND_VOTE => Rpc::Vote(decode(body)?),
        KIND_SNAPSHOT => {
            let request: InstallSnapshotRequest<TypeConfig> = decode(body)?;
            // openraft writes a chunk at the offset the peer names: bound it, or one request
            // could make this voter grow its snapshot buffer without limit.
            let end = request.offset.saturating_add(request.data.len() as u64);
            if end > MAX_SNAPSHOT_BYTES {
                return Err(std::io::Error::other(format!(
                    "snapshot chunk ends at byte {end}, past the {MAX_SNAPSHOT_BYTES}-byte limit"
                )));
            }
            Rpc::Snapshot(request)
        }
        KIND_CONTROLLER => Rpc::Controller(decode(body)?),
        KIND_IMAGE => Rpc::Image(decode(body)?),
        other => return Err(std::io::Error::other(format!("unknown RPC kind {other}"))),
    })
}

async fn serve_connection(
    mut stream: Conn,
    raft: Raft<TypeConfig>,
    controller: std::sync::Arc<ActiveController>,
) -> std::io::Result<()> {
    loop {
        let frame = read_frame(&mut stream).await?;
        let answer = match parse_rpc(&frame)? {
            Rpc::Append(request) => encode(&raft.append_entries(request).await)?,
            Rpc::Vote(request) => encode(&raft.vote(request).await)?,
            Rpc::Snapshot(request) => encode(&raft.install_snapshot(request).await)?,
            Rpc::Controller(op) => encode(&controller.execute(op).await)?,
            Rpc::Image(request) => {
                let mut images = controller.images();
                // Wait for something newer, up to the long poll; then answer either way.
                let _ = tokio::time::timeout(
                    IMAGE_LONG_POLL,
                    images.wait_for(|i| i.version > request.since),
                )
                .await;
                let image = images.borrow().clone();
                let records = (image.version > request.since).then(|| image.to_records());
                encode(&ImageReply {
                    version: image.version,
                    records,
                    view: controller.view(),
                })?
            }
        };
        write_frame(&mut stream, &[&answer]).await?;
    }
}

/// One request of `kind` to the voter at `addr` on a connection of its own, within `timeout`.
async fn one_shot<Req: Serialize, Resp: DeserializeOwned>(
    net: Net,
    addr: &str,
    kind: u8,
    request: &Req,
    timeout: Duration,
) -> std::io::Result<Resp> {
    let body = encode(request)?;
    let exchange = async {
        let mut stream =
            tokio::time::timeout(net.connect_timeout(CONNECT_TIMEOUT), net.connect(addr))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        write_frame(&mut stream, &[&[RPC_VERSION, kind], &body]).await?;
        read_frame(&mut stream).await
    };
    let answer = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    decode(&answer)
}

/// Sends one operation to the voter at `addr`, within `timeout`.
pub(crate) async fn call_controller(
    net: Net,
    addr: &str,
    op: &ControllerOp,
    timeout: Duration,
) -> std::io::Result<Result<ControllerReply, MetaError>> {
    one_shot(net, addr, KIND_CONTROLLER, op, timeout).await
}

/// Asks the voter at `addr` for its image if newer than `since`, waiting up to its long poll.
pub(crate) async fn fetch_image(
    net: Net,
    addr: &str,
    since: u64,
    timeout: Duration,
) -> std::io::Result<ImageReply> {
    one_shot(net, addr, KIND_IMAGE, &ImageRequest { since }, timeout).await
}

/// Makes a [`Peer`] per target voter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Network {
    pub(crate) net: Net,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            net: self.net.clone(),
            stream: None,
        }
    }
}

/// The client side of one peer's connection.
#[derive(Debug)]
pub(crate) struct Peer {
    target: NodeId,
    addr: String,
    net: Net,
    stream: Option<Conn>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl Peer {
    /// Sends one request and reads its answer within `ttl`; any transport failure drops the
    /// connection and reports the peer unreachable (openraft backs off and retries).
    async fn call<Req, Resp, E>(
        &mut self,
        kind: u8,
        request: &Req,
        ttl: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let exchange = async {
            if self.stream.is_none() {
                let stream = tokio::time::timeout(
                    self.net.connect_timeout(CONNECT_TIMEOUT),
                    self.net.connect(&self.addr),
                )
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                self.stream = Some(stream);
            }
            let stream = self
                .stream
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no connection"))?;
            write_frame(stream, &[&[RPC_VERSION, kind], &body]).await?;
            read_frame(stream).await
        };
        let answer = match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                self.stream = None;
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(_) => {
                self.stream = None;
                let e = std::io::Error::from(std::io::ErrorKind::TimedOut);
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        let result: Result<Resp, E> = decode(&answer).map_err(|e| {
            self.stream = None;
            RPCError::Network(NetworkError::new(&e))
        })?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        self.call(KIND_APPEND, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.call(KIND_SNAPSHOT, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        self.call(KIND_VOTE, &rpc, option.hard_ttl()).await
    }
}
