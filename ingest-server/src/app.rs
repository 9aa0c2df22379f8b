//! Assembly of the running server from its configuration: database (and
//! migrations), evidence store, fine table, ingest worker, the embedded
//! broker or the external one, the MQTT client and the HTTP listener. Used
//! by `main` and by the integration tests, which start the real thing on
//! free loopback ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::task::JoinHandle;

use crate::broker::{self, BrokerError};
use crate::clips::ClipAssembler;
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::evidence::{EvidenceStore, EvidenceStoreError};
use crate::fines::{FineTable, ScheduleError};
use crate::ingest::{BatchSettings, IngestContext, Ingestor};
use crate::mqtt::{self, MqttSettings};
use crate::registry::http::RegistryBackend;
use crate::registry::{DemoRegistry, GatewayError, HttpRegistry, Registry, SqlRegistry};
use crate::web::{self, ApiContext};

/// Why the server did not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// Payments (`[payments]`).
    #[error(transparent)]
    Payments(#[from] crate::payments::PaymentError),
    /// Database.
    /// The configuration, where a check needs the start (a file it names).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Db(#[from] DbError),
    /// Evidence store.
    #[error(transparent)]
    Evidence(#[from] EvidenceStoreError),
    /// Fine schedules.
    #[error(transparent)]
    Fines(#[from] ScheduleError),
    /// The HTTP registry gateway (`[registry.http]`).
    #[error(transparent)]
    Registry(#[from] GatewayError),
    /// Plate grammar data.
    #[error("plate grammar: {0}")]
    Grammar(String),
    /// Embedded broker.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The server's ack-signing key.
    #[error(transparent)]
    ServerKey(#[from] crate::server_key::ServerKeyError),
    /// `[audit] anchor_dir` cannot take anchors.
    #[error("audit.anchor_dir: {0}")]
    AnchorDir(#[from] crate::audit::anchoring::AnchoringError),
    /// HTTP listener.
    #[error("HTTP listener on {addr}: {source}")]
    Http {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Opens the database and evidence store and starts the ingest worker
/// (no network): what the CLI and the servers share.
pub async fn open(cfg: &Config) -> Result<Ingestor, StartError> {
    let db = Db::connect(&cfg.database_url()).await?;
    crate::sso::citizen::load_actor_key(&db).await?;
    let evidence = EvidenceStore::open(&cfg.storage, &cfg.data_dir, db.pool().clone()).await?;
    let grammar = plate_ocr::plate::PlateGrammar::try_builtin()
        .map_err(|e| StartError::Grammar(e.to_string()))?;
    let registry: Arc<dyn Registry> = match (&cfg.registry.backend, &cfg.registry.http) {
        (RegistryBackend::Http, Some(http)) => {
            tracing::info!(url = %http.endpoint(), "owner registry: HTTP gateway");
            Arc::new(HttpRegistry::new(http, db.clone())?)
        }
        (RegistryBackend::Http, None) => {
            return Err(GatewayError::Setup(
                "backend = \"http\" needs a [registry.http] section".into(),
            )
            .into());
        }
        (RegistryBackend::Sql, _) if cfg.registry.demo_mode => {
            tracing::warn!("registry demo mode: unknown plates get FICTITIOUS owners (demo only)");
            Arc::new(DemoRegistry::new(db.clone()))
        }
        (RegistryBackend::Sql, _) => Arc::new(SqlRegistry::new(db.clone())),
    };
    let ctx = IngestContext {
        registry: Some(registry),
        metrics: Default::default(),
        db,
        evidence,
        fines: FineTable::builtin()?,
        grammar,
        clock_tolerance: time::Duration::seconds(
            i64::try_from(cfg.ingest.clock_tolerance_s).unwrap_or(i64::MAX),
        ),
        require_known_camera: cfg.ingest.require_known_camera,
    };
    Ok(Ingestor::start(
        Arc::new(ctx),
        BatchSettings {
            max_items: cfg.ingest.batch_max,
            max_wait: Duration::from_millis(cfg.ingest.batch_wait_ms),
        },
    ))
}

/// A started server.
pub struct Running {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// The broker the server consumes from (embedded or external).
    pub mqtt_addr: (String, u16),
    /// The ingest pipeline.
    pub ingestor: Ingestor,
    /// The HTTP server task.
    pub http: JoinHandle<std::io::Result<()>>,
    /// The MQTT client task.
    pub mqtt: JoinHandle<()>,
}

/// Starts everything; returns once the listeners are bound.
pub async fn start(cfg: &Config) -> Result<Running, StartError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| EvidenceStoreError::Dir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    // Before anything binds a port: a share not mounted stops the start.
    if cfg.audit.enabled() {
        crate::audit::anchoring::check_dir(&cfg.audit.anchor_dir)?;
    }
    let ingestor = open(cfg).await?;
    let server_key =
        Arc::new(crate::server_key::ServerKey::open(cfg, &ingestor.context().db).await?);
    tracing::info!(public_key = %server_key.public_key_hex(), "acks are signed with the server key");

    let mut credentials = None;
    let mut tls = None;
    let connections = cfg.mqtt.connection_count();
    let (host, port, share_group) = match cfg.mqtt.external()? {
        Some(ext) => {
            credentials = ext.credentials;
            tls = ext.tls;
            let url = ext.url;
            (url.host, url.port, Some(cfg.mqtt.share_group.clone()))
        }
        None => {
            let addr = cfg.mqtt.listen;
            if cfg.mqtt.embedded {
                // Devices log in with their enrolment secret; this server's
                // own client with a login made for this run.
                let auth = cfg.mqtt.embedded_auth.then(|| {
                    let internal = broker::InternalLogin::random(&cfg.mqtt.client_id);
                    credentials = Some((internal.username.clone(), internal.password.clone()));
                    broker::BrokerAuth::spawn(ingestor.context().db.clone(), internal)
                });
                tokio::task::spawn_blocking(move || broker::start(addr, auth))
                    .await
                    .map_err(|e| BrokerError::Thread(std::io::Error::other(e.to_string())))??;
            }
            (addr.ip().to_string(), addr.port(), None)
        }
    };
    let settings = MqttSettings {
        host: host.clone(),
        port,
        client_id: cfg.mqtt.client_id.clone(),
        connections,
        share_group,
        credentials,
        tls,
        server_key: server_key.clone(),
    };
    // Cases a previous run stored but did not look up yet, then, every
    // minute, lookups lost or failed (with a backoff).
    if let Some(registry) = ingestor.context().registry.clone() {
        crate::registry::spawn_sweeper(ingestor.context().db.clone(), registry);
    }
    if cfg.retention.enabled {
        crate::retention::spawn(
            ingestor.context().db.clone(),
            ingestor.context().evidence.clone(),
            cfg.retention.clone(),
        );
    }
    if cfg.audit.enabled() {
        crate::audit::anchoring::spawn(
            ingestor.context().db.clone(),
            server_key.clone(),
            cfg.audit.clone(),
        );
    }
    let clips = Arc::new(ClipAssembler::default());
    let mqtt = tokio::spawn(mqtt::run(settings, ingestor.clone(), clips));
    let notices = crate::notices::spawn_worker(cfg, ingestor.context().clone()).await;

    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .map_err(|source| StartError::Http {
            addr: cfg.http.listen,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| StartError::Http {
        addr: cfg.http.listen,
        source,
    })?;
    let payments =
        crate::payments::Payments::from_config(&cfg.payments, ingestor.context().clone())?;
    if let Some(p) = &payments {
        crate::payments::spawn_reconciler(p.clone());
    }
    let api = ApiContext {
        ingestor: ingestor.clone(),
        admin_token: (!cfg.admin.token.is_empty()).then(|| cfg.admin.token.clone()),
        metrics_token: (!cfg.http.metrics_token.is_empty()).then(|| cfg.http.metrics_token.clone()),
        secure_cookies: cfg.secure_cookies(),
        sso: cfg.sso.as_ref().map(|s| Arc::new(crate::sso::Sso::new(s))),
        citizen_sso: cfg
            .citizen_sso
            .as_ref()
            .map(|s| Arc::new(crate::sso::CitizenSso::new(s))),
        payments,
        notices,
        console_idle_ms: cfg.console_idle_ms(),
        sign_in_throttle: Arc::default(),
        uploads: Arc::new(tokio::sync::Semaphore::new(crate::web::MAX_UPLOADS)),
        trusted_proxies: cfg.trusted_proxies().unwrap_or_default().into(),
        server_key,
    };
    let http = tokio::spawn(async move {
        // Peer addresses for the payment IPN's allow-list.
        let app = web::router(api).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });
    Ok(Running {
        http_addr,
        mqtt_addr: (host, port),
        ingestor,
        http,
        mqtt,
    })
}
