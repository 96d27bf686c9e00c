//! Helpers the center's integration tests share (`mod support;`): a fresh PostgreSQL schema per
//! test, and an HTTP receiver standing in for a webhook sink.

#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A fresh schema on the server `HERD_TEST_POSTGRES_URL` names, as a database URL whose
/// connections use it; `None` skips the test.
pub async fn postgres_schema(prefix: &str) -> Option<String> {
    use sqlx::Connection as _;
    let base = std::env::var("HERD_TEST_POSTGRES_URL").ok()?;
    let schema = format!("{prefix}_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}options=-csearch_path%3D{schema}"))
}

/// What the receiver got: (path and query, body).
pub type Received = Arc<Mutex<Vec<(String, String)>>>;

/// An HTTP receiver answering 200 to everything, recording each request.
pub async fn receiver(listener: TcpListener) -> Received {
    let received: Received = Arc::default();
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let target = request
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        log.lock()
                            .unwrap()
                            .push((target, String::from_utf8_lossy(&body).into_owned()));
                        Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    received
}
