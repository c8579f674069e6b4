//! Opening a connection. The client's logic runs over any [`Connector`]: the WebSocket one in
//! use, channels in the unit tests (so timeouts and backoff run on paused time).

use std::pin::Pin;

use futures_util::future::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

use crate::{Auth, ClientError};

/// What the server sent, as far as the client's logic cares.
#[derive(Debug)]
pub(crate) enum Frame {
    Text(String),
    /// Binary frames are not part of the protocol.
    Binary(usize),
}

pub(crate) type FrameStream = Pin<Box<dyn Stream<Item = Result<Frame, String>> + Send>>;
pub(crate) type FrameSink = Pin<Box<dyn Sink<String, Error = String> + Send>>;

/// One open connection: frames in (ending when the connection closes), text frames out.
pub(crate) struct Connection {
    pub(crate) frames: FrameStream,
    pub(crate) sink: FrameSink,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The handshake was answered with an HTTP status (401/403 from `$connect`, ...).
    Refused(u16),
    Failed(String),
}

pub(crate) trait Connector: Send + Sync + 'static {
    fn connect(&self) -> BoxFuture<'static, Result<Connection, ConnectError>>;
}

/// Characters kept as they are in a query value: RFC 3986's unreserved ones.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

#[derive(Debug)]
pub(crate) struct WebSocketConnector {
    request: http::Request<()>,
}

impl WebSocketConnector {
    pub(crate) fn new(url: &str, auth: &Auth) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl { url: url.to_owned(), reason };
        let separator = if url.contains('?') { '&' } else { '?' };
        let full_url = match auth {
            Auth::QueryToken(token) => format!("{url}{separator}token={}", utf8_percent_encode(token, QUERY_VALUE)),
            Auth::PlayerId(id) => format!("{url}{separator}playerId={}", utf8_percent_encode(id, QUERY_VALUE)),
            Auth::Subprotocol(_) => url.to_owned(),
        };
        let mut request = full_url.into_client_request().map_err(|e| invalid(e.to_string()))?;
        if let Auth::Subprotocol(token) = auth {
            let offer = format!("{}, {token}", matchgate_protocol::SUBPROTOCOL);
            let value =
                HeaderValue::from_str(&offer).map_err(|_| invalid("the token is not a valid header value".into()))?;
            request.headers_mut().insert(http::header::SEC_WEBSOCKET_PROTOCOL, value);
        }
        Ok(Self { request })
    }
}

impl Connector for WebSocketConnector {
    fn connect(&self) -> BoxFuture<'static, Result<Connection, ConnectError>> {
        let request = self.request.clone();
        Box::pin(async move {
            let (socket, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| match e {
                tungstenite::Error::Http(response) => ConnectError::Refused(response.status().as_u16()),
                other => ConnectError::Failed(other.to_string()),
            })?;
            let (sink, stream) = socket.split();
            let frames =
                stream.take_while(|m| std::future::ready(!matches!(m, Ok(Message::Close(_))))).filter_map(|m| {
                    std::future::ready(match m {
                        Ok(Message::Text(text)) => Some(Ok(Frame::Text(text.to_string()))),
                        Ok(Message::Binary(data)) => Some(Ok(Frame::Binary(data.len()))),
                        Ok(_) => None,
                        Err(e) => Some(Err(e.to_string())),
                    })
                });
            let sink = sink
                .with(|text: String| std::future::ready(Ok::<_, tungstenite::Error>(Message::text(text))))
                .sink_map_err(|e| e.to_string());
            Ok(Connection { frames: Box::pin(frames), sink: Box::pin(sink) })
        })
    }
}
