//! The standard libp2p rendezvous protocol, `/rendezvous/1.0.0`, as far
//! as an rdht rendezvous node serves it (PROTOCOL.md 16): its protobuf
//! messages, a strict bounded codec for them, the request-response framing
//! (an unsigned varint length, then one message, as rust-libp2p's
//! rendezvous writes it), and the translation to and from the core's
//! [`dht::StandardRequest`] / [`dht::StandardAnswer`].
//!
//! Written here rather than taken from `libp2p-rendezvous`, which the
//! `rdht` binary does not link (its codec is private anyway); the tests
//! check it against that crate both ways. Decoding follows protobuf's
//! rules (fields in any order, unknown fields skipped, the last value of a
//! repeated scalar wins) within bounds: every length is checked against
//! its cap and the remaining input before anything is allocated, groups
//! and unknown wire types are refused, strings must be UTF-8, and nothing
//! panics.

use std::io;

use dht::{StandardAnswer, StandardRefusal, StandardRequest};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};

/// The standard rendezvous protocol.
pub const STANDARD_PROTOCOL: StreamProtocol = StreamProtocol::new("/rendezvous/1.0.0");
/// Longest message (rust-libp2p's cap).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Longest namespace (the spec's).
pub const MAX_NAMESPACE_BYTES: usize = 255;
/// Longest cookie: 8 bytes and a namespace, as rust-libp2p makes them.
pub const MAX_COOKIE_BYTES: usize = 8 + MAX_NAMESPACE_BYTES;
/// Longest status text.
pub const MAX_STATUS_TEXT_BYTES: usize = 1024;
/// Longest signed peer record accepted in a message.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Longest unregister id.
const MAX_ID_BYTES: usize = 1024;
/// Most registrations in one decoded discover response (each takes at
/// least 2 bytes of the message). Nesting is fixed (a message, its
/// sub-message, a registration): the decoder never recurses.
const MAX_REGISTRATIONS: usize = MAX_MESSAGE_BYTES / 4;

/// `Message.MessageType`.
const REGISTER: u64 = 0;
const REGISTER_RESPONSE: u64 = 1;
const UNREGISTER: u64 = 2;
const DISCOVER: u64 = 3;
const DISCOVER_RESPONSE: u64 = 4;

/// `Message.ResponseStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `E_INVALID_NAMESPACE`
    InvalidNamespace,
    /// `E_INVALID_SIGNED_PEER_RECORD`
    InvalidSignedPeerRecord,
    /// `E_INVALID_TTL`
    InvalidTtl,
    /// `E_INVALID_COOKIE`
    InvalidCookie,
    /// `E_NOT_AUTHORIZED`
    NotAuthorized,
    /// `E_INTERNAL_ERROR`
    InternalError,
    /// `E_UNAVAILABLE`
    Unavailable,
}

impl Status {
    /// The wire number.
    pub fn code(self) -> u64 {
        match self {
            Status::Ok => 0,
            Status::InvalidNamespace => 100,
            Status::InvalidSignedPeerRecord => 101,
            Status::InvalidTtl => 102,
            Status::InvalidCookie => 103,
            Status::NotAuthorized => 200,
            Status::InternalError => 300,
            Status::Unavailable => 400,
        }
    }

    /// The status of a wire number (`None`: not a status).
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => Status::Ok,
            100 => Status::InvalidNamespace,
            101 => Status::InvalidSignedPeerRecord,
            102 => Status::InvalidTtl,
            103 => Status::InvalidCookie,
            200 => Status::NotAuthorized,
            300 => Status::InternalError,
            400 => Status::Unavailable,
            _ => return None,
        })
    }
}

/// `Message.Register` (also each registration of a discover response).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Register {
    /// `ns`
    pub ns: Option<String>,
    /// `signedPeerRecord`: an encoded signed envelope.
    pub signed_peer_record: Option<Vec<u8>>,
    /// `ttl`, in seconds.
    pub ttl: Option<u64>,
}

/// One rendezvous message (the `type` field and its sub-message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `REGISTER`
    Register(Register),
    /// `REGISTER_RESPONSE`
    RegisterResponse {
        /// `status` (absent on the wire: `None`).
        status: Option<Status>,
        /// `statusText`
        status_text: Option<String>,
        /// `ttl`
        ttl: Option<u64>,
    },
    /// `UNREGISTER`
    Unregister {
        /// `ns`
        ns: Option<String>,
        /// `id`
        id: Option<Vec<u8>>,
    },
    /// `DISCOVER`
    Discover {
        /// `ns`
        ns: Option<String>,
        /// `limit`
        limit: Option<u64>,
        /// `cookie`
        cookie: Option<Vec<u8>>,
    },
    /// `DISCOVER_RESPONSE`
    DiscoverResponse {
        /// `registrations`
        registrations: Vec<Register>,
        /// `cookie`
        cookie: Option<Vec<u8>>,
        /// `status`
        status: Option<Status>,
        /// `statusText`
        status_text: Option<String>,
    },
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A varint is longer than 10 bytes or overflows.
    #[error("invalid varint")]
    Varint,
    /// A field's length is over its cap.
    #[error("field {0} too long")]
    TooLong(&'static str),
    /// A known field has another wire type, or a wire type is unknown.
    #[error("wrong wire type for {0}")]
    WireType(&'static str),
    /// A string is not UTF-8.
    #[error("{0} is not UTF-8")]
    Utf8(&'static str),
    /// A value outside its domain (an unknown message type or status).
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// The type names a sub-message that is missing.
    #[error("the message's type and fields disagree")]
    Inconsistent,
}

// ----- encoding -------------------------------------------------------------

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, field << 3 | wire);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_u64(out: &mut Vec<u8>, field: u64, v: u64) {
    put_key(out, field, 0);
    put_varint(out, v);
}

fn put_opt_bytes(out: &mut Vec<u8>, field: u64, v: Option<&[u8]>) {
    if let Some(v) = v {
        put_bytes(out, field, v);
    }
}

fn put_opt_u64(out: &mut Vec<u8>, field: u64, v: Option<u64>) {
    if let Some(v) = v {
        put_u64(out, field, v);
    }
}

impl Register {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_opt_bytes(&mut out, 1, self.ns.as_deref().map(str::as_bytes));
        put_opt_bytes(&mut out, 2, self.signed_peer_record.as_deref());
        put_opt_u64(&mut out, 3, self.ttl);
        out
    }
}

impl Message {
    /// The protobuf encoding (fields in number order, as prost writes them).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let (kind, field, sub) = match self {
            Message::Register(r) => (REGISTER, 2, r.encode()),
            Message::RegisterResponse {
                status,
                status_text,
                ttl,
            } => {
                let mut sub = Vec::new();
                put_opt_u64(&mut sub, 1, status.map(Status::code));
                put_opt_bytes(&mut sub, 2, status_text.as_deref().map(str::as_bytes));
                put_opt_u64(&mut sub, 3, *ttl);
                (REGISTER_RESPONSE, 3, sub)
            }
            Message::Unregister { ns, id } => {
                let mut sub = Vec::new();
                put_opt_bytes(&mut sub, 1, ns.as_deref().map(str::as_bytes));
                put_opt_bytes(&mut sub, 2, id.as_deref());
                (UNREGISTER, 4, sub)
            }
            Message::Discover { ns, limit, cookie } => {
                let mut sub = Vec::new();
                put_opt_bytes(&mut sub, 1, ns.as_deref().map(str::as_bytes));
                put_opt_u64(&mut sub, 2, *limit);
                put_opt_bytes(&mut sub, 3, cookie.as_deref());
                (DISCOVER, 5, sub)
            }
            Message::DiscoverResponse {
                registrations,
                cookie,
                status,
                status_text,
            } => {
                let mut sub = Vec::new();
                for r in registrations {
                    put_bytes(&mut sub, 1, &r.encode());
                }
                put_opt_bytes(&mut sub, 2, cookie.as_deref());
                put_opt_u64(&mut sub, 3, status.map(Status::code));
                put_opt_bytes(&mut sub, 4, status_text.as_deref().map(str::as_bytes));
                (DISCOVER_RESPONSE, 6, sub)
            }
        };
        put_u64(&mut out, 1, kind);
        put_bytes(&mut out, field, &sub);
        out
    }

    /// Decodes one message (the bytes after the length prefix).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLong("message"));
        }
        let mut kind = None;
        let mut subs: [Option<&[u8]>; 7] = [None; 7];
        let mut r = Reader(bytes);
        while let Some((field, wire)) = r.key()? {
            match field {
                1 => kind = Some(r.u64(wire, "type")?),
                2..=6 => subs[field as usize] = Some(r.bytes(wire, MAX_MESSAGE_BYTES, "field")?),
                _ => r.skip(wire)?,
            }
        }
        let kind = kind.ok_or(DecodeError::Inconsistent)?;
        let sub = |i: usize| subs[i].ok_or(DecodeError::Inconsistent);
        Ok(match kind {
            REGISTER => Message::Register(decode_register(sub(2)?)?),
            REGISTER_RESPONSE => {
                let (mut status, mut status_text, mut ttl) = (None, None, None);
                let mut r = Reader(sub(3)?);
                while let Some((field, wire)) = r.key()? {
                    match field {
                        1 => status = Some(r.status(wire)?),
                        2 => {
                            status_text =
                                Some(r.string(wire, MAX_STATUS_TEXT_BYTES, "statusText")?)
                        }
                        3 => ttl = Some(r.u64(wire, "ttl")?),
                        _ => r.skip(wire)?,
                    }
                }
                Message::RegisterResponse {
                    status,
                    status_text,
                    ttl,
                }
            }
            UNREGISTER => {
                let (mut ns, mut id) = (None, None);
                let mut r = Reader(sub(4)?);
                while let Some((field, wire)) = r.key()? {
                    match field {
                        1 => ns = Some(r.string(wire, MAX_NAMESPACE_BYTES, "ns")?),
                        2 => id = Some(r.bytes(wire, MAX_ID_BYTES, "id")?.to_vec()),
                        _ => r.skip(wire)?,
                    }
                }
                Message::Unregister { ns, id }
            }
            DISCOVER => {
                let (mut ns, mut limit, mut cookie) = (None, None, None);
                let mut r = Reader(sub(5)?);
                while let Some((field, wire)) = r.key()? {
                    match field {
                        1 => ns = Some(r.string(wire, MAX_NAMESPACE_BYTES, "ns")?),
                        2 => limit = Some(r.u64(wire, "limit")?),
                        3 => cookie = Some(r.bytes(wire, MAX_COOKIE_BYTES, "cookie")?.to_vec()),
                        _ => r.skip(wire)?,
                    }
                }
                Message::Discover { ns, limit, cookie }
            }
            DISCOVER_RESPONSE => {
                let mut registrations = Vec::new();
                let (mut cookie, mut status, mut status_text) = (None, None, None);
                let mut r = Reader(sub(6)?);
                while let Some((field, wire)) = r.key()? {
                    match field {
                        1 => {
                            if registrations.len() >= MAX_REGISTRATIONS {
                                return Err(DecodeError::TooLong("registrations"));
                            }
                            let bytes = r.bytes(wire, MAX_MESSAGE_BYTES, "registration")?;
                            registrations.push(decode_register(bytes)?);
                        }
                        2 => cookie = Some(r.bytes(wire, MAX_COOKIE_BYTES, "cookie")?.to_vec()),
                        3 => status = Some(r.status(wire)?),
                        4 => {
                            status_text =
                                Some(r.string(wire, MAX_STATUS_TEXT_BYTES, "statusText")?)
                        }
                        _ => r.skip(wire)?,
                    }
                }
                Message::DiscoverResponse {
                    registrations,
                    cookie,
                    status,
                    status_text,
                }
            }
            _ => return Err(DecodeError::InvalidValue("type")),
        })
    }
}

fn decode_register(bytes: &[u8]) -> Result<Register, DecodeError> {
    let mut out = Register::default();
    let mut r = Reader(bytes);
    while let Some((field, wire)) = r.key()? {
        match field {
            1 => out.ns = Some(r.string(wire, MAX_NAMESPACE_BYTES, "ns")?),
            2 => {
                out.signed_peer_record = Some(
                    r.bytes(wire, MAX_RECORD_BYTES, "signedPeerRecord")?
                        .to_vec(),
                )
            }
            3 => out.ttl = Some(r.u64(wire, "ttl")?),
            _ => r.skip(wire)?,
        }
    }
    Ok(out)
}

/// A bounded protobuf reader.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.0.split_first().ok_or(DecodeError::UnexpectedEnd)?;
            self.0 = rest;
            if i == 9 && b > 1 {
                return Err(DecodeError::Varint);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Varint)
    }

    /// The next field's number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u64)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(DecodeError::InvalidValue("field number"));
        }
        Ok(Some((field, key & 7)))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        if len > self.0.len() as u64 {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (head, rest) = self.0.split_at(len as usize);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self, wire: u64, what: &'static str) -> Result<u64, DecodeError> {
        if wire != 0 {
            return Err(DecodeError::WireType(what));
        }
        self.varint()
    }

    fn bytes(
        &mut self,
        wire: u64,
        cap: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        if wire != 2 {
            return Err(DecodeError::WireType(what));
        }
        let len = self.varint()?;
        if len > cap as u64 {
            return Err(DecodeError::TooLong(what));
        }
        self.take(len)
    }

    fn string(&mut self, wire: u64, cap: usize, what: &'static str) -> Result<String, DecodeError> {
        let bytes = self.bytes(wire, cap, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Utf8(what))
    }

    fn status(&mut self, wire: u64) -> Result<Status, DecodeError> {
        let code = self.u64(wire, "status")?;
        Status::from_code(code).ok_or(DecodeError::InvalidValue("status"))
    }

    fn skip(&mut self, wire: u64) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => {
                let len = self.varint()?;
                self.take(len).map(drop)
            }
            5 => self.take(4).map(drop),
            _ => Err(DecodeError::WireType("unknown field")),
        }
    }
}

// ----- translation ------------------------------------------------------------

/// The core's view of a request (`None`: a message no client sends,
/// answered by dropping the stream).
pub fn to_request(message: Message) -> Option<StandardRequest> {
    match message {
        Message::Register(r) => Some(StandardRequest::Register {
            namespace: r.ns.unwrap_or_default(),
        }),
        Message::Unregister { .. } => Some(StandardRequest::Unregister),
        Message::Discover { ns, limit, cookie } => Some(StandardRequest::Discover {
            namespace: ns,
            limit,
            cookie,
        }),
        Message::RegisterResponse { .. } | Message::DiscoverResponse { .. } => None,
    }
}

fn refusal_status(refusal: &StandardRefusal) -> Status {
    match refusal {
        StandardRefusal::InvalidNamespace(_) => Status::InvalidNamespace,
        StandardRefusal::InvalidCookie => Status::InvalidCookie,
        StandardRefusal::NotAuthorized(_) => Status::NotAuthorized,
        StandardRefusal::Unavailable(_) => Status::Unavailable,
    }
}

/// The message answering the core's answer (`None`: no answer).
pub fn to_message(answer: StandardAnswer) -> Option<Message> {
    match answer {
        StandardAnswer::None => None,
        StandardAnswer::Registered(refusal) => Some(Message::RegisterResponse {
            status: Some(refusal_status(&refusal)),
            status_text: Some(refusal.reason().to_owned()),
            ttl: None,
        }),
        StandardAnswer::Discovered(Ok(page)) => Some(Message::DiscoverResponse {
            registrations: page
                .registrations
                .into_iter()
                .map(|r| Register {
                    ns: Some(r.namespace),
                    signed_peer_record: Some(r.record),
                    ttl: Some(r.ttl_s),
                })
                .collect(),
            cookie: Some(page.cookie),
            status: Some(Status::Ok),
            status_text: None,
        }),
        StandardAnswer::Discovered(Err(refusal)) => Some(Message::DiscoverResponse {
            registrations: Vec::new(),
            cookie: None,
            status: Some(refusal_status(&refusal)),
            status_text: Some(refusal.reason().to_owned()),
        }),
    }
}

// ----- framing ----------------------------------------------------------------

/// Reads an unsigned varint length (at most 1 MiB) and that many bytes.
async fn read_message<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Message> {
    let mut len: u64 = 0;
    for i in 0..4 {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        len |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "length prefix"));
        }
    }
    if len > MAX_MESSAGE_BYTES as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact(&mut buf).await?;
    Message::decode(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_message<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    message: &Message,
) -> io::Result<()> {
    let body = message.encode();
    let mut out = Vec::with_capacity(body.len() + 4);
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    io.write_all(&out).await?;
    io.close().await
}

/// The request-response codec of `/rendezvous/1.0.0`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StandardCodec;

impl request_response::Codec for StandardCodec {
    type Protocol = StreamProtocol;
    type Request = Message;
    type Response = Message;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Message>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Message>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_message(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Message,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Message,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_message(io, &res).await
    }
}
