//! The fixed-response backend: the same upstream for every contender.
//!
//! Each listener answers `ok backend-IP:PORT` (so a client can tell which endpoint served
//! it) and `/big` with 1 MiB, over HTTP/1.1 keep-alive, whatever the method or headers.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::args::{Error, Flags};

const BIG: usize = 1 << 20;

pub async fn run(flags: &Flags) -> Result<(), Error> {
    let big = Bytes::from(vec![b'x'; BIG]);
    for addr in flags.text("listen")?.split(',') {
        let addr: SocketAddr = addr.parse().map_err(|_| format!("bad address {addr}"))?;
        let listener = TcpListener::bind(addr).await?;
        let small = Bytes::from(format!("ok backend-{addr}\n"));
        tokio::spawn(serve(listener, small, big.clone()));
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn serve(listener: TcpListener, small: Bytes, big: Bytes) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (small, big) = (small.clone(), big.clone());
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let body = if request.uri().path() == "/big" { big.clone() } else { small.clone() };
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "text/plain")
                        .body(Full::new(body))
                        .expect("static response"),
                )
            }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
