//! Answers the proxy makes itself, and which side each one blames.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{ResponseBody, text};
use crate::routing::{HostError, PathError};

/// A response the proxy writes instead of forwarding, with the side at fault: the client
/// (4xx), the configuration (404, 503), or the upstream (502, 504).
#[derive(Debug)]
pub enum Answer {
    BadHost(HostError),
    BadPath(PathError),
    /// The connection's certificate does not cover the request's host.
    Misdirected,
    /// 308 to this https URL.
    Redirect(String),
    NoRoute,
    NoEndpoints,
    UpstreamUnreachable,
    UpstreamFailed,
    UpstreamTimeout,
    /// The client stopped sending its request body.
    ClientBodyTimeout,
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        match self {
            Answer::BadHost(_) | Answer::BadPath(_) => StatusCode::BAD_REQUEST,
            Answer::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Answer::Redirect(_) => StatusCode::PERMANENT_REDIRECT,
            Answer::NoRoute => StatusCode::NOT_FOUND,
            Answer::NoEndpoints => StatusCode::SERVICE_UNAVAILABLE,
            Answer::UpstreamUnreachable | Answer::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Answer::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Answer::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn message(&self) -> &'static str {
        match self {
            Answer::BadHost(HostError::Missing) => "400 Bad Request: the request has no host\n",
            Answer::BadHost(HostError::Invalid) => "400 Bad Request: the host is not valid\n",
            Answer::BadPath(PathError::EncodedSeparator) => {
                "400 Bad Request: the path has an encoded '/', '\\' or NUL\n"
            }
            Answer::BadPath(_) => "400 Bad Request: the path is not valid\n",
            Answer::Misdirected => {
                "421 Misdirected Request: this connection's certificate does not cover the \
                 host; open a new connection for it\n"
            }
            Answer::Redirect(_) => "308 Permanent Redirect: use https\n",
            Answer::NoRoute => "404 Not Found: no rule matches this host and path\n",
            Answer::NoEndpoints => "503 Service Unavailable: the service has no ready endpoints\n",
            Answer::UpstreamUnreachable => "502 Bad Gateway: the service could not be reached\n",
            Answer::UpstreamFailed => "502 Bad Gateway: the service did not answer properly\n",
            Answer::UpstreamTimeout => "504 Gateway Timeout: the service did not answer in time\n",
            Answer::ClientBodyTimeout => "408 Request Timeout: the request body stalled\n",
        }
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        let mut response = Response::new(text(self.message()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Answer::Redirect(location) = &self
            && let Ok(value) = HeaderValue::from_str(location)
        {
            headers.insert(header::LOCATION, value);
        }
        if matches!(self, Answer::ClientBodyTimeout) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
