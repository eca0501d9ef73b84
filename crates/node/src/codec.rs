//! libp2p request-response codec of `/rdht/rendezvous/2.0.0`.
//!
//! On a substream: a `u32` big-endian length, then that many bytes of one
//! `rendezvous-proto` frame. The length is checked against
//! [`Limits::DEFAULT`]'s `max_message_bytes` *before* anything is
//! allocated; an oversized or truncated frame is an I/O error, which makes
//! libp2p drop that substream only (never the connection, never another
//! peer's). A frame of the right size whose bytes do not decode becomes
//! [`Frame::Malformed`], which the server answers with
//! `Rejected(Decode)`: the sender learns why.

use std::io;

use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use rendezvous_proto::{Limits, Request, Response, StatusCode};

/// The protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(rendezvous_proto::PROTOCOL_ID);

/// Largest frame accepted or sent.
pub const MAX_FRAME_BYTES: usize = Limits::DEFAULT.max_message_bytes;

/// One message as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<T> {
    /// A message that decoded (or is to be encoded).
    Message(T),
    /// Bytes written verbatim after the length prefix. Only tests and
    /// fuzzing send this (garbage, frames carrying invalid records); it is
    /// never produced by reading.
    Raw(Vec<u8>),
    /// A frame of acceptable size whose bytes did not decode, and the code
    /// to answer with. Only produced by reading; writing it sends an empty
    /// frame.
    Malformed(StatusCode),
}

/// Messages that can be decoded from a frame.
pub trait Wire: Sized {
    /// The canonical encoding.
    fn to_wire(&self) -> Vec<u8>;
    /// Strict decoding.
    fn from_wire(bytes: &[u8]) -> Result<Self, rendezvous_proto::DecodeError>;
}

impl Wire for Request {
    fn to_wire(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_wire(bytes: &[u8]) -> Result<Self, rendezvous_proto::DecodeError> {
        Request::decode(bytes)
    }
}

impl Wire for Response {
    fn to_wire(&self) -> Vec<u8> {
        self.encode()
    }
    fn from_wire(bytes: &[u8]) -> Result<Self, rendezvous_proto::DecodeError> {
        Response::decode(bytes)
    }
}

/// The codec (stateless).
#[derive(Debug, Clone, Copy, Default)]
pub struct RdhtCodec;

/// Reads one length-prefixed frame, refusing oversized lengths before
/// allocating.
async fn read_frame<T: AsyncRead + Unpin + Send, M: Wire>(io: &mut T) -> io::Result<Frame<M>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {MAX_FRAME_BYTES}"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(match M::from_wire(&buf) {
        Ok(m) => Frame::Message(m),
        Err(e) => Frame::Malformed(rendezvous_proto::Rejection::Decode(e).code()),
    })
}

async fn write_frame<T: AsyncWrite + Unpin + Send, M: Wire>(
    io: &mut T,
    frame: Frame<M>,
) -> io::Result<()> {
    let bytes = match frame {
        Frame::Message(m) => m.to_wire(),
        Frame::Raw(b) => b,
        Frame::Malformed(_) => Vec::new(),
    };
    // The peer refuses a frame over the cap unread: never send one (the
    // cores page their answers to fit, so this is a bug if it happens).
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {MAX_FRAME_BYTES}", bytes.len()),
        ));
    }
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl libp2p::request_response::Codec for RdhtCodec {
    type Protocol = StreamProtocol;
    type Request = Frame<Request>;
    type Response = Frame<Response>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Self::Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Self::Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Self::Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Self::Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::futures::executor::block_on;
    use libp2p::futures::io::Cursor;
    use libp2p::request_response::Codec;

    fn read_req(bytes: Vec<u8>) -> io::Result<Frame<Request>> {
        let mut cursor = Cursor::new(bytes);
        block_on(RdhtCodec.read_request(&PROTOCOL, &mut cursor))
    }

    #[test]
    fn round_trip_and_refusals() {
        let req = Request::Dkg(vec![1, 2, 3]);
        let mut out = Cursor::new(Vec::new());
        block_on(RdhtCodec.write_request(&PROTOCOL, &mut out, Frame::Message(req.clone())))
            .unwrap();
        assert_eq!(read_req(out.into_inner()).unwrap(), Frame::Message(req));

        // #13 item 5: a frame over the cap is never written.
        let mut out = Cursor::new(Vec::new());
        let oversized = Frame::<Request>::Raw(vec![0; MAX_FRAME_BYTES + 1]);
        assert!(block_on(RdhtCodec.write_request(&PROTOCOL, &mut out, oversized)).is_err());
        assert!(
            out.into_inner().is_empty(),
            "bytes of an oversized frame were written"
        );
        // Oversized: refused from the length alone.
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(read_req(huge).is_err());
        // Truncated.
        assert!(read_req(vec![0, 0, 0, 10, 1]).is_err());
        assert!(read_req(vec![0, 0]).is_err());
        // Garbage of a valid size: answered, not dropped.
        let mut garbage = 9u32.to_be_bytes().to_vec();
        garbage.push(rendezvous_proto::codec::WIRE_VERSION);
        garbage.extend_from_slice(b"\xeegarbage");
        assert_eq!(
            read_req(garbage).unwrap(),
            Frame::Malformed(StatusCode::Decode)
        );
        // A frame of protocol version 1: answered with its own code.
        let mut v1 = 9u32.to_be_bytes().to_vec();
        v1.extend_from_slice(b"\x01\x03garbage");
        assert_eq!(
            read_req(v1).unwrap(),
            Frame::Malformed(StatusCode::UnsupportedVersion)
        );
    }
}
