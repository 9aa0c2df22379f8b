//! The test's registry gateway: HTTPS with mutual TLS on a free loopback
//! port (axum over tokio-rustls, a client certificate required), its
//! certificates from `common::pki` (the `openssl` CLI), and a script of
//! misbehaviour.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::common::pki::Pki;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use ingest_server::registry::http::LOOKUP_PATH;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

/// The plate the gateway knows.
pub const PLATE: &str = "30A12345";

// ---------------------------------------------------------------- gateway

/// What the gateway does with one request.
#[derive(Debug, Clone)]
pub enum Act {
    /// As the contract says: 200 for the known plate, 409 for an ambiguous
    /// one without colour, else 404 `vehicle_not_found`.
    Answer,
    /// This status with an error body of this code.
    Status(u16, &'static str),
    /// Waits, then answers.
    Slow(Duration),
    /// Waits until the test calls [`Gateway::release`], then answers: a
    /// lookup the test knows is under way and unanswered, whatever the
    /// clock says.
    Held,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with 1 MiB of JSON.
    Huge,
    /// 200 with the national ID as a number.
    WrongTypes,
    /// 200 without the owner's name.
    Missing,
    /// 404 from something that is not the gateway (an HTML page).
    Html404,
    /// 200 with an HTML page.
    Html200,
    /// 200 about another plate.
    OtherPlate,
}

/// The test's gateway: counts the requests that reach it, records them,
/// and follows a script (then `default`).
pub struct Gateway {
    hits: AtomicUsize,
    /// Connections refused in the TLS handshake.
    pub tls_refused: AtomicUsize,
    requests: Mutex<Vec<(Option<String>, Value)>>,
    script: Mutex<VecDeque<Act>>,
    default: Mutex<Act>,
    /// Requests waiting in [`Act::Held`].
    held: AtomicUsize,
    /// Set once by [`Gateway::release`].
    released: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn then(&self, acts: &[Act]) {
        self.script.lock().unwrap().extend(acts.iter().cloned());
    }

    pub fn always(&self, act: Act) {
        *self.default.lock().unwrap() = act;
    }

    pub fn request(&self, n: usize) -> (Option<String>, Value) {
        self.requests.lock().unwrap()[n].clone()
    }

    /// How many requests are waiting in [`Act::Held`].
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets every held request (and any later one) answer.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
}

fn registration(plate: &str) -> Value {
    json!({
        "vehicle": {"plate_text": plate, "plate_colour": "white", "vehicle_type": "car",
            "make": "Toyota Vios", "colour": "trắng", "registration_status": "active",
            "owner_id": "gw-o1"},
        "owner": {"owner_id": "gw-o1", "full_name": "Nguyễn Văn An",
            "national_id": "001099012345", "address": "12 Xuân Thủy, Cầu Giấy, Hà Nội",
            "email": "an@example.vn", "vneid": null,
            "phone": "0912345678", "date_of_birth": "1990-01-01"}
    })
}

fn json_answer(status: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

async fn lookup(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    gw.hits.fetch_add(1, Ordering::SeqCst);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    gw.requests.lock().unwrap().push((id, req.clone()));
    let next = gw.script.lock().unwrap().pop_front();
    let act = next.unwrap_or_else(|| gw.default.lock().unwrap().clone());
    let plate = req["plate_text"].as_str().unwrap_or_default().to_string();
    let err = |status: u16, code: &str| {
        json_answer(
            status,
            &json!({"error": {"code": code, "message": "test gateway"}}),
        )
    };
    let html = |status: u16| {
        (
            StatusCode::from_u16(status).unwrap(),
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Not Found</body></html>",
        )
            .into_response()
    };
    match act {
        Act::Slow(d) => {
            tokio::time::sleep(d).await;
            contract(&req, &plate)
        }
        Act::Held => {
            let mut released = gw.released.subscribe();
            gw.held.fetch_add(1, Ordering::SeqCst);
            let _ = released.wait_for(|r| *r).await;
            gw.held.fetch_sub(1, Ordering::SeqCst);
            contract(&req, &plate)
        }
        Act::Answer => contract(&req, &plate),
        Act::Status(s, code) => err(s, code),
        Act::Garbage => (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"vehicle\": {\"plate_text\": ",
        )
            .into_response(),
        Act::Huge => {
            let filler = "x".repeat(1 << 20);
            json_answer(200, &json!({"padding": filler}))
        }
        Act::WrongTypes => {
            let mut v = registration(&plate);
            v["owner"]["national_id"] = json!(1099012345u64);
            json_answer(200, &v)
        }
        Act::Missing => {
            let mut v = registration(&plate);
            v["owner"].as_object_mut().unwrap().remove("full_name");
            json_answer(200, &v)
        }
        Act::Html404 => html(404),
        Act::Html200 => html(200),
        Act::OtherPlate => json_answer(200, &registration("51F67890")),
    }
}

fn contract(req: &Value, plate: &str) -> Response {
    let colour = req["plate_colour"].as_str();
    match (plate, colour) {
        (PLATE, None | Some("white")) => json_answer(200, &registration(plate)),
        ("29A11111", None) => json_answer(
            409,
            &json!({"error": {"code": "ambiguous", "message": "white and yellow"}}),
        ),
        _ => json_answer(
            404,
            &json!({"error": {"code": "vehicle_not_found", "message": "no such vehicle"}}),
        ),
    }
}

/// A TLS listener for axum: the handshake asks for a client certificate
/// issued by the gateway's CA; connections that fail it are counted and
/// dropped.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: TlsAcceptor,
    gw: Arc<Gateway>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            match tokio::time::timeout(Duration::from_secs(2), handshake).await {
                Ok(Ok(tls)) => return (tls, addr),
                _ => {
                    self.gw.tls_refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn certs(path: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Starts the gateway; returns it and its base URL.
pub async fn start_gateway(pki: &Pki) -> (Arc<Gateway>, String) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs(&pki.path("ca.crt")) {
        roots.add(c).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs(&pki.path("server.crt")),
            PrivateKeyDer::from_pem_file(pki.path("server.key")).unwrap(),
        )
        .unwrap();
    let gw = Arc::new(Gateway {
        hits: AtomicUsize::new(0),
        tls_refused: AtomicUsize::new(0),
        requests: Mutex::new(Vec::new()),
        script: Mutex::new(VecDeque::new()),
        default: Mutex::new(Act::Answer),
        held: AtomicUsize::new(0),
        released: tokio::sync::watch::Sender::new(false),
    });
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        gw: gw.clone(),
    };
    let app = axum::Router::new()
        .route(&format!("/registry{LOOKUP_PATH}"), post(lookup))
        .with_state(gw.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (gw, format!("https://127.0.0.1:{port}/registry"))
}
