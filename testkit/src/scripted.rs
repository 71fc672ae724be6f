//! A scripted HTTP API on 127.0.0.1:0 for APIs as they really answer (declared charsets, byte
//! order marks, empty bodies, retries): each path answers from a list of [`Canned`] answers
//! (the last one repeats), every request is recorded, unknown paths get 404.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::Recorded;

/// One canned answer.
#[derive(Clone)]
pub struct Canned {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// An answer with `status`, an optional `Content-Type` and `body`.
pub fn answer(status: u16, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> Canned {
    Canned {
        status,
        headers: content_type.map(|ct| ("content-type", ct.to_string())).into_iter().collect(),
        body: body.into(),
    }
}

/// A 200 answer with a JSON body.
pub fn json_answer(body: Value) -> Canned {
    answer(200, Some("application/json"), body.to_string())
}

/// A server that answers each path from a script (the last answer repeats) and records every
/// request; unknown paths get 404.
pub struct Scripted {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
}

type Script = Arc<Mutex<HashMap<String, VecDeque<Canned>>>>;

impl Scripted {
    /// Starts the server on its own thread: `routes` are (path, answers in order).
    pub fn start(routes: Vec<(&str, Vec<Canned>)>) -> Self {
        let script: Script = Arc::new(Mutex::new(
            routes.into_iter().map(|(p, answers)| (p.to_string(), answers.into_iter().collect())).collect(),
        ));
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = (script, log.clone());
        let addr = crate::serve_on_thread(Router::new().fallback(serve).with_state(state));
        Self { addr, log }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log").clone()
    }
}

async fn serve(
    axum::extract::State((script, log)): axum::extract::State<(Script, Arc<Mutex<Vec<Recorded>>>)>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    log.lock().expect("log").push(Recorded {
        method: method.to_string(),
        uri: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers,
        body: body.to_vec(),
    });
    let canned = {
        let mut script = script.lock().expect("script");
        match script.get_mut(uri.path()) {
            Some(q) if q.len() > 1 => q.pop_front(),
            Some(q) => q.front().cloned(),
            None => None,
        }
    };
    let Some(c) = canned else {
        return (StatusCode::NOT_FOUND, "no such path").into_response();
    };
    let mut resp = Response::new(axum::body::Body::from(c.body));
    *resp.status_mut() = StatusCode::from_u16(c.status).expect("status");
    for (k, v) in c.headers {
        resp.headers_mut().insert(k, v.parse().expect("header value"));
    }
    resp
}
