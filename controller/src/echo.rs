//! `portcullis echo`: a tiny HTTP/1.1 server that answers every request with what it
//! received, in plain text, and echoes WebSocket messages back. Useful as a smoke-test
//! backend, in the quick start and in a cluster.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// The largest request body echoed back; larger bodies are counted, not echoed.
const MAX_ECHOED_BODY: usize = 64 * 1024;

pub async fn run_echo(listener: TcpListener, name: String) -> std::io::Result<()> {
    let name: Arc<str> = Arc::from(name);
    tracing::info!(addr = %listener.local_addr()?, name = %name, "echo server listening");
    loop {
        let (stream, peer) = listener.accept().await?;
        let name = Arc::clone(&name);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let name = Arc::clone(&name);
                async move { Ok::<_, Infallible>(echo(req, peer, &name).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "echo connection ended");
            }
        });
    }
}

async fn echo(mut req: Request<Incoming>, peer: SocketAddr, name: &str) -> Response<Full<Bytes>> {
    if let Some(response) = websocket(&mut req) {
        return response;
    }

    let mut text = format!(
        "echo: {name}\npeer: {peer}\nmethod: {}\npath: {}\nversion: {:?}\nheaders:\n",
        req.method(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
        req.version(),
    );
    for (key, value) in req.headers() {
        text.push_str(&format!(
            "  {key}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    match Limited::new(req.into_body(), MAX_ECHOED_BODY)
        .collect()
        .await
    {
        Ok(body) => {
            let body = body.to_bytes();
            text.push_str(&format!("body-bytes: {}\n", body.len()));
            if !body.is_empty() {
                text.push_str("body:\n");
                text.push_str(&String::from_utf8_lossy(&body));
                text.push('\n');
            }
        }
        Err(error) => text.push_str(&format!("body-error: {error}\n")),
    }
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Accepts a WebSocket upgrade and echoes each message back; `None` for other requests.
fn websocket(req: &mut Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants {
        return None;
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"missing Sec-WebSocket-Key\n",
        )));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Some(response);
    };
    let accept = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
            if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    Some(response)
}
