//! `bench-tools`: the pieces of `bench/run.sh` that stock tools do not provide.
//!
//! - `backend`: the fixed-response HTTP/1.1 server every contender proxies to.
//! - `certs`: many ECDSA P-256 certificates at once (for rotations and for 10k hosts).
//! - `handshakes`: full TLS 1.3 handshakes in a loop, SNI spread over many hosts.
//! - `probe`: a fresh handshake every few milliseconds, printing which certificate came.
//! - `idle`: many TLS connections opened, used once, then held idle and watched.
//!
//! Every loop is bounded by a count and a time. Nothing here is part of Portcullis.

mod args;
mod backend;
mod certs;
mod client;
mod http1;

use std::process::ExitCode;

const USAGE: &str = "usage: bench-tools <backend|certs|handshakes|probe|idle> [--flag value]...
  backend    --listen ADDR[,ADDR...]
  certs      --count N --name PATTERN --out DIR        ({} in PATTERN becomes the index)
  handshakes --connect ADDR --sni PATTERN [--hosts N] [--concurrency C] [--seconds S]
             [--max N] [--request PATH]
  probe      --connect ADDR --sni NAME [--interval-ms MS] [--concurrency C] [--seconds S]
  idle       --connect ADDR --sni NAME --count N [--request PATH] [--seconds S]";

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(command) = argv.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let flags = match args::Flags::parse(argv) {
        Ok(flags) => flags,
        Err(message) => {
            eprintln!("bench-tools: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    // One thread: the load-generator core is shared with the backend, and the figures
    // that matter are the contender's, measured on its own core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match command.as_str() {
            "backend" => backend::run(&flags).await,
            "certs" => certs::run(&flags),
            "handshakes" => client::handshakes(&flags).await,
            "probe" => client::probe(&flags).await,
            "idle" => client::idle(&flags).await,
            other => Err(format!("unknown command {other}").into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-tools {command}: {error}");
            ExitCode::FAILURE
        }
    }
}
