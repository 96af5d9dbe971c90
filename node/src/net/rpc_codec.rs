//! Framing for the node-to-node request-response protocol: a 4-byte big-endian
//! length, then one message encoded by [`mass_protocol::codec`]. Oversized and
//! malformed frames are refused before any large allocation and counted.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use mass_protocol::{
    codec,
    rpc::{Request, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::metrics::{Metrics, Protocol};

/// request-response codec for [`mass_protocol::names::RPC_PROTOCOL`].
#[derive(Debug, Clone)]
pub struct RpcCodec {
    metrics: Metrics,
    max_message: usize,
}

impl RpcCodec {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics, max_message: codec::MAX_RPC_MESSAGE }
    }

    async fn read<T, M>(&self, io: &mut T) -> io::Result<M>
    where
        T: AsyncRead + Unpin + Send,
        M: DeserializeOwned,
    {
        let result = read_frame(io, self.max_message).await.and_then(|bytes| {
            self.metrics.received(Protocol::Rpc, bytes.len());
            codec::decode(&bytes, self.max_message).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        });
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::InvalidData
        {
            self.metrics.decode_failure(Protocol::Rpc);
        }
        result
    }

    async fn write<T, M>(&self, io: &mut T, message: &M) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
        M: Serialize,
    {
        let bytes = codec::encode(message).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if bytes.len() > self.max_message {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "message exceeds the rpc size limit"));
        }
        // One write, prefix and body: two would be two frames (yamux, noise)
        // and, for a small message, two packets.
        let mut framed = Vec::with_capacity(4 + bytes.len());
        framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        framed.extend_from_slice(&bytes);
        io.write_all(&framed).await?;
        io.close().await?;
        self.metrics.sent(Protocol::Rpc, bytes.len());
        Ok(())
    }
}

/// Reads one length-prefixed frame of at most `limit` bytes.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {limit} bytes"),
        ));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    Ok(bytes)
}

impl libp2p::request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Response) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    use super::*;

    fn codec() -> (RpcCodec, Metrics) {
        let (metrics, _) = Metrics::new();
        (RpcCodec::new(metrics.clone()), metrics)
    }

    fn proto() -> StreamProtocol {
        StreamProtocol::new(mass_protocol::names::RPC_PROTOCOL)
    }

    #[test]
    fn request_round_trips_through_a_frame() {
        futures::executor::block_on(async {
            let (mut c, _) = codec();
            let mut buf = Cursor::new(Vec::new());
            c.write_request(&proto(), &mut buf, Request::GetAdvert).await.unwrap();
            let mut read = Cursor::new(buf.into_inner());
            assert_eq!(c.read_request(&proto(), &mut read).await.unwrap(), Request::GetAdvert);
        });
    }

    #[test]
    fn oversized_frame_is_refused_and_counted() {
        futures::executor::block_on(async {
            let (mut c, metrics) = codec();
            let mut frame = (u32::MAX).to_be_bytes().to_vec();
            frame.extend_from_slice(&[0; 16]);
            let err = c.read_request(&proto(), &mut Cursor::new(frame)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(metrics.decode_failures(Protocol::Rpc), 1);
        });
    }

    #[test]
    fn garbage_and_truncated_frames_are_refused() {
        futures::executor::block_on(async {
            let (mut c, metrics) = codec();
            let garbage = [0, 0, 0, 3, 0xff, 0xff, 0xff];
            assert!(c.read_request(&proto(), &mut Cursor::new(garbage.to_vec())).await.is_err());
            let truncated = [0, 0, 0, 9, 0];
            assert!(c.read_request(&proto(), &mut Cursor::new(truncated.to_vec())).await.is_err());
            assert_eq!(metrics.decode_failures(Protocol::Rpc), 1, "a short read is an I/O error, not a decode failure");
        });
    }
}
