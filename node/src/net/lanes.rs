//! Lanes: one long-lived stream per peer that carries many forwarded
//! predictions at once.
//!
//! A request-response call opens a substream per request, and both the
//! request and its answer go through the swarm task on each side. A lane
//! is opened once (`libp2p-stream`) and then read and written by its own
//! tasks: every frame is `[u32 length][u64 call number][message]`, answers
//! come back in any order, matched by number. A call dropped by its caller
//! (a lost hedge, a deadline) is forgotten here; its answer is discarded.
//!
//! Only small predictions use a lane (a big batch would hold up the single
//! rows behind it); the rest, and every other request, stay on
//! request-response. A peer that does not speak the lane protocol is
//! asked by request-response for a while before a lane is tried again.
//!
//! On the serving side a lane's calls count against the same inbound quota
//! as request-response calls (overall and per peer), a peer may hold a few
//! lanes at most, and anything but a prediction is refused by name.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, StreamProtocol};
use mass_protocol::{
    codec, names,
    rpc::{Request, Response, RpcError, RpcErrorKind},
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::{client::PredictHandler, quota::Quota, rpc_codec::read_frame};
use crate::metrics::{Metrics, Protocol};

/// Requests larger than this go by request-response: on a lane they would
/// hold up the small ones behind them.
pub const MAX_LANE_REQUEST: usize = 256 * 1024;
/// Frames waiting for a lane's writer.
const QUEUED_FRAMES: usize = 256;
/// How long opening a lane may take before the call goes by request-response.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a peer that refused a lane is asked by request-response only.
const REFUSED_FOR: Duration = Duration::from_secs(30);
/// Lanes one peer may hold open to this node at once, and all peers together.
const LANES_PER_PEER: usize = 4;
const LANES_IN_ALL: usize = 1024;
/// The call number before each message.
const ID_BYTES: usize = 8;

fn protocol() -> StreamProtocol {
    StreamProtocol::new(names::LANE_PROTOCOL)
}

/// Why a call did not go on a lane.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    /// Nothing was sent: the caller may use request-response instead.
    #[error("{0}")]
    NotSent(String),
    /// Sent, but the lane closed before its answer came.
    #[error("{0}")]
    Lost(String),
}

/// Frames `message` as call `id`, if it fits in `limit` bytes.
fn frame<M: Serialize>(id: u64, message: &M, limit: usize) -> Result<Vec<u8>, String> {
    let bytes = codec::encode_within(message, limit).map_err(|e| e.to_string())?;
    let mut framed = Vec::with_capacity(4 + ID_BYTES + bytes.len());
    framed.extend_from_slice(&((ID_BYTES + bytes.len()) as u32).to_be_bytes());
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&bytes);
    Ok(framed)
}

/// A frame read off a lane: its call number and its message, or why the
/// message did not decode (the frame was read whole, so the lane goes on).
type Read<M> = (u64, Result<M, String>);

/// Reads one frame whose message is at most `limit` bytes; `Err` when the
/// lane cannot go on (closed, or a frame it cannot skip).
async fn read_message<T, M>(io: &mut T, limit: usize, metrics: &Metrics) -> std::io::Result<Read<M>>
where
    T: AsyncRead + Unpin,
    M: DeserializeOwned,
{
    let bytes = read_frame(io, ID_BYTES + limit).await?;
    if bytes.len() < ID_BYTES {
        metrics.decode_failure(Protocol::Lane);
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a lane frame without its call number"));
    }
    metrics.received(Protocol::Lane, bytes.len());
    let (id, body) = bytes.split_at(ID_BYTES);
    let id = u64::from_be_bytes(id.try_into().expect("split at ID_BYTES"));
    let message = codec::decode(body, limit).map_err(|e| {
        metrics.decode_failure(Protocol::Lane);
        e.to_string()
    });
    Ok((id, message))
}

/// Writes queued frames until the queue closes or the stream fails; frames
/// that queued up meanwhile go out before one flush.
async fn write_frames<T: AsyncWrite + Unpin>(mut io: T, mut frames: mpsc::Receiver<Vec<u8>>, metrics: Metrics) {
    while let Some(frame) = frames.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next {
            if let Err(e) = io.write_all(&frame).await {
                debug!("lane closed while writing: {e}");
                return;
            }
            metrics.sent(Protocol::Lane, frame.len() - 4);
            next = frames.try_recv().ok();
        }
        if let Err(e) = io.flush().await {
            debug!("lane closed while flushing: {e}");
            return;
        }
    }
    let _ = io.close().await;
}

/// The calling side of one lane.
struct Lane {
    frames: mpsc::Sender<Vec<u8>>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
}

/// Calls waiting for their answers; none are taken once the lane closed.
struct Pending {
    open: bool,
    calls: HashMap<u64, oneshot::Sender<Response>>,
}

impl Lane {
    /// Starts the tasks that write and read `stream`.
    fn start<S>(stream: S, metrics: Metrics) -> Arc<Self>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (reader, writer) = stream.split();
        let (frames, queued) = mpsc::channel(QUEUED_FRAMES);
        let lane = Arc::new(Self {
            frames,
            pending: Mutex::new(Pending { open: true, calls: HashMap::new() }),
            next_id: AtomicU64::new(0),
        });
        tokio::spawn(write_frames(writer, queued, metrics.clone()));
        tokio::spawn(lane.clone().read_answers(reader, metrics));
        lane
    }

    fn is_open(&self) -> bool {
        self.pending.lock().expect("lane lock is never held across a panic").open && !self.frames.is_closed()
    }

    /// Hands each answer to its call until the lane closes; then every call
    /// still waiting learns it is lost.
    async fn read_answers<R: AsyncRead + Unpin>(self: Arc<Self>, mut reader: R, metrics: Metrics) {
        loop {
            match read_message::<_, Response>(&mut reader, codec::MAX_RPC_MESSAGE, &metrics).await {
                Ok((id, answer)) => {
                    let answer = answer.unwrap_or_else(|e| {
                        Response::Error(RpcError {
                            kind: RpcErrorKind::Unavailable,
                            message: format!("the peer's answer did not decode: {e}"),
                        })
                    });
                    let waiting = self.pending.lock().expect("lane lock").calls.remove(&id);
                    if let Some(call) = waiting {
                        let _ = call.send(answer);
                    }
                }
                Err(e) => {
                    debug!("lane closed while reading: {e}");
                    break;
                }
            }
        }
        let mut pending = self.pending.lock().expect("lane lock");
        pending.open = false;
        pending.calls.clear();
    }

    /// Sends `request` and waits for its answer.
    async fn call(self: &Arc<Self>, request: &Request) -> Result<Response, LaneError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let framed = frame(id, request, MAX_LANE_REQUEST).map_err(LaneError::NotSent)?;
        let (reply, answer) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("lane lock");
            if !pending.open {
                return Err(LaneError::NotSent("the lane is closed".into()));
            }
            pending.calls.insert(id, reply);
        }
        // Whatever ends this call (an answer, a dropped future) forgets it.
        let _forget = Forget { lane: self, id };
        self.frames.send(framed).await.map_err(|_| LaneError::NotSent("the lane is closed".into()))?;
        answer.await.map_err(|_| LaneError::Lost("the lane closed before the answer came".into()))
    }
}

struct Forget<'a> {
    lane: &'a Lane,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.lane.pending.lock().expect("lane lock").calls.remove(&self.id);
    }
}

/// What this node knows of its lane to one peer.
#[derive(Default)]
enum Slot {
    #[default]
    None,
    Open(Arc<Lane>),
    /// The peer refused a lane (or could not be reached) at this time.
    Refused(Instant),
}

/// The calling side: a lane per peer, opened on first use.
#[derive(Clone)]
pub struct Lanes {
    control: libp2p_stream::Control,
    slots: Arc<Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<Slot>>>>>,
    metrics: Metrics,
}

impl fmt::Debug for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lanes").finish_non_exhaustive()
    }
}

impl Lanes {
    pub fn new(control: libp2p_stream::Control, metrics: Metrics) -> Self {
        Self { control, slots: Default::default(), metrics }
    }

    /// Sends `request` to `peer` on its lane and waits for the answer.
    pub async fn call(&self, peer: PeerId, request: &Request) -> Result<Response, LaneError> {
        self.lane(peer).await?.call(request).await
    }

    async fn lane(&self, peer: PeerId) -> Result<Arc<Lane>, LaneError> {
        let slot = {
            let mut slots = self.slots.lock().expect("lanes lock is never held across a panic");
            slots.entry(peer).or_default().clone()
        };
        let mut slot = slot.lock().await;
        match &*slot {
            Slot::Open(lane) if lane.is_open() => return Ok(lane.clone()),
            Slot::Refused(at) if at.elapsed() < REFUSED_FOR => {
                return Err(LaneError::NotSent(format!("{peer} refused a lane lately")));
            }
            _ => {}
        }
        let mut control = self.control.clone();
        let opened = match tokio::time::timeout(OPEN_TIMEOUT, control.open_stream(peer, protocol())).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no lane within {OPEN_TIMEOUT:?}")),
        };
        match opened {
            Ok(stream) => {
                let lane = Lane::start(stream, self.metrics.clone());
                *slot = Slot::Open(lane.clone());
                Ok(lane)
            }
            Err(reason) => {
                debug!(%peer, "no lane: {reason}");
                *slot = Slot::Refused(Instant::now());
                Err(LaneError::NotSent(reason))
            }
        }
    }
}

/// The serving side: accepts lanes and answers their predictions with
/// `predict`, each call admitted by `inbound` as request-response calls are.
pub fn serve(
    mut control: libp2p_stream::Control,
    predict: PredictHandler,
    inbound: Quota<PeerId>,
    metrics: Metrics,
) -> Result<(), String> {
    let mut incoming = control.accept(protocol()).map_err(|e| format!("cannot accept lanes: {e}"))?;
    let lanes = Quota::new(LANES_IN_ALL, LANES_PER_PEER);
    tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            match lanes.try_admit(peer) {
                Ok(held) => {
                    let (predict, inbound, metrics) = (predict.clone(), inbound.clone(), metrics.clone());
                    tokio::spawn(async move {
                        answer_lane(peer, stream, predict, inbound, metrics).await;
                        drop(held);
                    });
                }
                // Dropping the stream closes it: the peer falls back to request-response.
                Err(refusal) => debug!(%peer, "lane refused: {refusal}"),
            }
        }
    });
    Ok(())
}

/// Answers the calls of one lane until it closes.
async fn answer_lane<S>(peer: PeerId, stream: S, predict: PredictHandler, inbound: Quota<PeerId>, metrics: Metrics)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, writer) = stream.split();
    let (frames, queued) = mpsc::channel(QUEUED_FRAMES);
    tokio::spawn(write_frames(writer, queued, metrics.clone()));
    loop {
        let (id, request) = match read_message::<_, Request>(&mut reader, MAX_LANE_REQUEST, &metrics).await {
            Ok(read) => read,
            Err(e) => {
                debug!(%peer, "lane closed: {e}");
                return;
            }
        };
        let refuse = |kind, message: String| Response::Error(RpcError { kind, message });
        let answer = match request {
            Ok(Request::Predict(call)) => match inbound.try_admit(peer) {
                Ok(permit) => {
                    let (answer, frames) = (predict(*call), frames.clone());
                    tokio::spawn(async move {
                        let response = answer.await;
                        drop(permit);
                        send_answer(&frames, id, &response).await;
                    });
                    continue;
                }
                Err(refusal) => refuse(RpcErrorKind::Overloaded, refusal.to_string()),
            },
            Ok(other) => {
                refuse(RpcErrorKind::BadInput, format!("a lane carries predictions only, not {}", request_name(&other)))
            }
            Err(e) => refuse(RpcErrorKind::BadInput, format!("the request did not decode: {e}")),
        };
        send_answer(&frames, id, &answer).await;
    }
}

async fn send_answer(frames: &mpsc::Sender<Vec<u8>>, id: u64, response: &Response) {
    let framed = frame(id, response, codec::MAX_RPC_MESSAGE).or_else(|e| {
        let too_big = Response::Error(RpcError { kind: RpcErrorKind::Unavailable, message: e });
        frame(id, &too_big, codec::MAX_RPC_MESSAGE)
    });
    if let Ok(framed) = framed {
        let _ = frames.send(framed).await;
    }
}

fn request_name(request: &Request) -> String {
    let debug = format!("{request:?}");
    debug.split(|c: char| !c.is_alphanumeric()).next().unwrap_or("a request").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mass_protocol::serving::{Cell, PredictCall, Predicted, Prediction, Row, Rows};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    fn metrics() -> Metrics {
        Metrics::new().0
    }

    fn call(rows: usize) -> PredictCall {
        PredictCall {
            model: "m".into(),
            manifest: mass_protocol::ContentId::of(b"m"),
            version: 1,
            rows: Rows::Listed(vec![Row::Values(vec![Cell::Number(1.0)]); rows]),
            allow_missing: false,
        }
    }

    /// Answers each call with as many predictions as it has rows, the
    /// calls with fewer rows sooner (so answers come back out of order).
    fn echo() -> PredictHandler {
        Arc::new(|call: PredictCall| {
            Box::pin(async move {
                let rows = call.rows.len();
                tokio::time::sleep(Duration::from_millis(5 * (10 - rows.min(10)) as u64)).await;
                Response::Predicted(Box::new(Prediction {
                    model: call.model,
                    version: call.version,
                    manifest: call.manifest,
                    predictions: vec![Predicted::Value(1.0); rows],
                    probabilities: Vec::new(),
                    classes: Vec::new(),
                    served_by: "far".into(),
                }))
            })
        })
    }

    fn pair(predict: PredictHandler, inbound: Quota<PeerId>) -> Arc<Lane> {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let peer = PeerId::random();
        tokio::spawn(answer_lane(peer, far.compat(), predict, inbound, metrics()));
        Lane::start(near.compat(), metrics())
    }

    #[tokio::test]
    async fn calls_on_one_lane_are_answered_in_any_order_each_with_its_own_answer() {
        let lane = pair(echo(), Quota::new(64, 64));
        let calls = (1..=8).map(|rows| {
            let lane = lane.clone();
            async move { (rows, lane.call(&Request::Predict(Box::new(call(rows)))).await) }
        });
        for (rows, answer) in futures::future::join_all(calls).await {
            match answer.unwrap() {
                Response::Predicted(p) => assert_eq!(p.predictions.len(), rows),
                other => panic!("call of {rows} rows got {other:?}"),
            }
        }
        assert!(lane.pending.lock().unwrap().calls.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_call_is_forgotten_and_the_lane_goes_on() {
        let lane = pair(echo(), Quota::new(64, 64));
        let slow = Request::Predict(Box::new(call(1)));
        assert!(tokio::time::timeout(Duration::from_millis(5), lane.call(&slow)).await.is_err());
        assert!(lane.pending.lock().unwrap().calls.is_empty());
        let answer = lane.call(&Request::Predict(Box::new(call(9)))).await.unwrap();
        assert!(matches!(answer, Response::Predicted(p) if p.predictions.len() == 9));
    }

    #[tokio::test]
    async fn anything_but_a_prediction_is_refused_by_name_and_calls_past_the_quota_are_told_busy() {
        let lane = pair(echo(), Quota::new(1, 1));
        match lane.call(&Request::ListRefs).await.unwrap() {
            Response::Error(e) => {
                assert_eq!(e.kind, RpcErrorKind::BadInput);
                assert!(e.message.contains("predictions only, not ListRefs"), "{}", e.message);
            }
            other => panic!("got {other:?}"),
        }
        let (first, second) = (Request::Predict(Box::new(call(1))), Request::Predict(Box::new(call(9))));
        let (first, second) = tokio::join!(lane.call(&first), lane.call(&second));
        assert!(matches!(first.unwrap(), Response::Predicted(_)));
        assert!(matches!(second.unwrap(), Response::Error(e) if e.kind == RpcErrorKind::Overloaded));
    }

    #[tokio::test]
    async fn a_request_over_the_lane_limit_is_not_sent() {
        let lane = pair(echo(), Quota::new(64, 64));
        let big = PredictCall {
            rows: Rows::Listed(vec![Row::Values(vec![Cell::Text("x".repeat(MAX_LANE_REQUEST))])]),
            ..call(1)
        };
        assert!(matches!(lane.call(&Request::Predict(Box::new(big))).await, Err(LaneError::NotSent(_))));
        assert!(lane.is_open());
    }

    #[tokio::test]
    async fn a_frame_past_the_limit_closes_the_lane_and_waiting_calls_are_lost() {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let lane = Lane::start(near.compat(), metrics());
        let mut far = far.compat();
        let waiting = tokio::spawn({
            let lane = lane.clone();
            async move { lane.call(&Request::Predict(Box::new(call(1)))).await }
        });
        // Read the call, then answer with a length no lane accepts.
        let _ = read_message::<_, Request>(&mut far, MAX_LANE_REQUEST, &metrics()).await.unwrap();
        far.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        far.flush().await.unwrap();
        assert!(matches!(waiting.await.unwrap(), Err(LaneError::Lost(_))));
        assert!(!lane.is_open());
        assert!(matches!(lane.call(&Request::ListRefs).await, Err(LaneError::NotSent(_))));
    }

    #[tokio::test]
    async fn a_frame_that_does_not_decode_gets_an_answer_naming_it_and_the_lane_goes_on() {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let peer = PeerId::random();
        tokio::spawn(answer_lane(peer, far.compat(), echo(), Quota::new(64, 64), metrics()));
        let mut near = near.compat();
        let mut garbage = 12u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&7u64.to_be_bytes());
        garbage.extend_from_slice(&[0xff; 4]);
        near.write_all(&garbage).await.unwrap();
        let (id, answer) = read_message::<_, Response>(&mut near, codec::MAX_RPC_MESSAGE, &metrics()).await.unwrap();
        assert_eq!(id, 7);
        assert!(matches!(answer.unwrap(), Response::Error(e) if e.kind == RpcErrorKind::BadInput
            && e.message.contains("did not decode")));
        near.write_all(&frame(8, &Request::Predict(Box::new(call(2))), MAX_LANE_REQUEST).unwrap()).await.unwrap();
        let (id, answer) = read_message::<_, Response>(&mut near, codec::MAX_RPC_MESSAGE, &metrics()).await.unwrap();
        assert_eq!(id, 8);
        assert!(matches!(answer.unwrap(), Response::Predicted(p) if p.predictions.len() == 2));
    }
}
