//! Extractors: what every handler used to repeat before doing its work. Each rejects with the
//! API's JSON error body (a [`CenterError`]), never axum's plain-text rejections.
//!
//! - [`Operator`]: a request with a valid operator token;
//! - [`Caller`]: a request with a valid operator or vendor token;
//! - [`TerminalIdentity`]: the terminal named by the connection's client certificate, while
//!   that certificate is still the terminal's;
//! - [`Downloader`]: a terminal by its certificate, or else an operator or vendor by token;
//! - [`JsonBody`]: a JSON body read within its type's size limit and parsed, a mistake named
//!   with its JSON path (`the check-in: $.hardware.kind: …`);
//! - [`Query`] and [`Path`]: axum's, with the JSON error on a malformed query or path.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use herd_proto::api::{
    CaInstall, CheckinRequest, EnrolRequest, EventBatch, GroupDoc, NewApiToken, NewEnrolmentToken,
    PlacementRules,
};
use serde::de::DeserializeOwned;

use super::listener::ConnInfo;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Caller, Center, KnownTerminal};

/// The JSON bodies of API v1 are small; feeds have their own, configurable limit.
pub const MAX_JSON_BODY: u64 = 1 << 20;

/// An operator's request.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

/// The terminal behind the connection's client certificate.
#[derive(Debug, Clone)]
pub struct TerminalIdentity(pub Arc<KnownTerminal>);

/// Who may download a package: a terminal (by certificate) or an operator or vendor.
#[derive(Debug, Clone)]
pub enum Downloader {
    Terminal(Arc<KnownTerminal>),
    Caller(Caller),
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(parts: &Parts) -> CenterResult<&str> {
    let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        CenterError::unauthenticated(
            "this endpoint needs an API token: send `Authorization: Bearer <token>`",
        )
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            CenterError::unauthenticated("the Authorization header must be `Bearer <token>`")
        })
}

impl FromRequestParts<Arc<Center>> for Caller {
    type Rejection = CenterError;

    async fn from_request_parts(parts: &mut Parts, center: &Arc<Center>) -> CenterResult<Caller> {
        center.caller(bearer(parts)?).await
    }
}

impl FromRequestParts<Arc<Center>> for Operator {
    type Rejection = CenterError;

    async fn from_request_parts(parts: &mut Parts, center: &Arc<Center>) -> CenterResult<Operator> {
        center.operator(bearer(parts)?).await.map(|()| Operator)
    }
}

/// An operator's or an analyst's request (judging samples and files): the role's name.
#[derive(Debug, Clone, Copy)]
pub struct Judge(pub &'static str);

impl FromRequestParts<Arc<Center>> for Judge {
    type Rejection = CenterError;

    async fn from_request_parts(parts: &mut Parts, center: &Arc<Center>) -> CenterResult<Judge> {
        center.judge(bearer(parts)?).await.map(Judge)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConnInfo {
    type Rejection = CenterError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> CenterResult<ConnInfo> {
        // The listener attaches it to every request; its absence is a wiring fault.
        parts
            .extensions
            .get::<ConnInfo>()
            .cloned()
            .ok_or_else(|| CenterError::internal("the request came through no listener"))
    }
}

/// An operator's request, with the token it came with (what a one-time console link acts as).
#[derive(Debug, Clone)]
pub struct OperatorToken(pub String);

impl FromRequestParts<Arc<Center>> for OperatorToken {
    type Rejection = CenterError;

    async fn from_request_parts(
        parts: &mut Parts,
        center: &Arc<Center>,
    ) -> CenterResult<OperatorToken> {
        let token = bearer(parts)?;
        center.operator(token).await?;
        Ok(OperatorToken(token.to_owned()))
    }
}

impl FromRequestParts<Arc<Center>> for TerminalIdentity {
    type Rejection = CenterError;

    async fn from_request_parts(
        parts: &mut Parts,
        center: &Arc<Center>,
    ) -> CenterResult<TerminalIdentity> {
        let conn = ConnInfo::from_request_parts(parts, center).await?;
        center
            .terminal(conn.peer.as_deref())
            .await
            .map(TerminalIdentity)
    }
}

impl FromRequestParts<Arc<Center>> for Downloader {
    type Rejection = CenterError;

    async fn from_request_parts(
        parts: &mut Parts,
        center: &Arc<Center>,
    ) -> CenterResult<Downloader> {
        let conn = ConnInfo::from_request_parts(parts, center).await?;
        match conn.peer.as_deref() {
            Some(peer) => center.terminal(Some(peer)).await.map(Downloader::Terminal),
            None => Caller::from_request_parts(parts, center)
                .await
                .map(Downloader::Caller),
        }
    }
}

/// A request body type: what it is called in error messages, and how large it may be.
pub trait JsonRequest: DeserializeOwned {
    /// How messages name it: "the check-in".
    const WHAT: &'static str;
    /// The largest body accepted, in bytes.
    const LIMIT: u64 = MAX_JSON_BODY;
}

impl JsonRequest for EnrolRequest {
    const WHAT: &'static str = "the enrolment request";
}
impl JsonRequest for CheckinRequest {
    const WHAT: &'static str = "the check-in";
}
impl JsonRequest for EventBatch {
    const WHAT: &'static str = "the event batch";
    // Up to a thousand events with their data.
    const LIMIT: u64 = 8 * MAX_JSON_BODY;
}
impl JsonRequest for GroupDoc {
    const WHAT: &'static str = "the group";
}
impl JsonRequest for PlacementRules {
    const WHAT: &'static str = "the placement rules";
}
impl JsonRequest for NewEnrolmentToken {
    const WHAT: &'static str = "the token request";
}
impl JsonRequest for herd_proto::api::NewConsoleLink {
    const WHAT: &'static str = "the link request";
}

impl JsonRequest for NewApiToken {
    const WHAT: &'static str = "the token request";
}
impl JsonRequest for CaInstall {
    const WHAT: &'static str = "the CA";
}
impl JsonRequest for herd_proto::api::VendorSigningKey {
    const WHAT: &'static str = "the signing key";
}

impl JsonRequest for herd_proto::api::CertificateRenewal {
    const WHAT: &'static str = "the renewal request";
}

/// A JSON request body of type `T`, read within `T::LIMIT` and parsed.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: JsonRequest, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = CenterError;

    async fn from_request(request: Request, _: &S) -> CenterResult<JsonBody<T>> {
        check_json_content_type(request.headers(), T::WHAT)?;
        let bytes = read_body(request.into_body(), T::LIMIT, T::WHAT).await?;
        // Every request body of API v1 is an object; serde would also fill a struct from an
        // array of its fields in order, which the schema does not allow.
        if bytes.trim_ascii_start().first() != Some(&b'{') {
            return Err(CenterError::bad_request(format!(
                "{}: $: expected a JSON object",
                T::WHAT
            )));
        }
        parse_json(T::WHAT, &bytes).map(JsonBody)
    }
}

/// A body declared as something other than JSON is refused before it is read. A body without
/// a `Content-Type` is read as JSON: older scripts send none.
pub fn check_json_content_type(headers: &HeaderMap, what: &str) -> CenterResult<()> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) if other.starts_with("application/") && other.ends_with("+json") => Ok(()),
        _ => Err(CenterError::new(
            ErrorKind::UnsupportedMediaType,
            format!("{what} must be sent as Content-Type: application/json, not {value:?}"),
        )),
    }
}

/// Reads a whole request body, refusing more than `limit` bytes with `too_large`.
pub async fn read_body(body: axum::body::Body, limit: u64, what: &str) -> CenterResult<Bytes> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut kept: Vec<u8> = Vec::new();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| body_error(err, what))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len() as u64;
        if received <= limit {
            kept.extend_from_slice(&data);
            continue;
        }
        // Too large. The client is most likely still sending: read (and drop) the rest, up to
        // a bound, so that it gets to read this answer instead of a reset connection.
        drop(std::mem::take(&mut kept));
        let drain_limit = limit.saturating_mul(4).clamp(MAX_JSON_BODY, MAX_DRAIN);
        while received <= drain_limit {
            match body.frame().await {
                Some(Ok(frame)) => {
                    received += frame.data_ref().map_or(0, |data| data.len() as u64);
                }
                Some(Err(_)) | None => break,
            }
        }
        return Err(CenterError::new(
            ErrorKind::TooLarge,
            format!(
                "{what} is larger than the limit of {limit} bytes (at least {received} bytes arrived)"
            ),
        ));
    }
    Ok(Bytes::from(kept))
}

/// A body that failed while being read: too slow (`request_timeout`), or broken.
fn body_error(err: axum::Error, what: &str) -> CenterError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(slow) = cause.downcast_ref::<super::listener::BodyTimedOut>() {
            return CenterError::new(ErrorKind::RequestTimeout, format!("{what}: {slow}"));
        }
        source = cause.source();
    }
    CenterError::bad_request(format!("cannot read {what}: {err}"))
}

/// The most of a refused, too-large body the center reads and drops so the client can read
/// the refusal; beyond it the connection is closed.
const MAX_DRAIN: u64 = 1 << 30;

/// Parses a JSON body; a mistake is named with its JSON path (`$.hardware.kind: …`).
pub fn parse_json<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> CenterResult<T> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." {
            "$".to_owned()
        } else {
            format!("$.{path}")
        };
        CenterError::bad_request(format!("{what}: {path}: {}", err.inner()))
    })?;
    deserializer.end().map_err(|err| {
        CenterError::bad_request(format!(
            "{what}: trailing characters after the JSON value: {err}"
        ))
    })?;
    Ok(value)
}

/// Query parameters of type `T`; a malformed or unknown parameter is a JSON `bad_request`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = CenterError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> CenterResult<Query<T>> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                CenterError::bad_request(format!("the query string: {}", rejection.body_text()))
            })
    }
}

/// Path parameters of type `T`; one that does not decode is a JSON `bad_request`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = CenterError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> CenterResult<Path<T>> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| {
                CenterError::bad_request(format!("the path: {}", rejection.body_text()))
            })
    }
}

/// The site server behind the connection's certificate (center side of the site endpoints).
#[derive(Debug, Clone)]
pub struct SiteCaller(pub String);

impl FromRequestParts<Arc<Center>> for SiteCaller {
    type Rejection = CenterError;

    async fn from_request_parts(
        parts: &mut Parts,
        center: &Arc<Center>,
    ) -> CenterResult<SiteCaller> {
        let conn = ConnInfo::from_request_parts(parts, center).await?;
        center
            .site_caller(conn.peer.as_deref())
            .await
            .map(SiteCaller)
    }
}

/// The center calling one of its sites with its own certificate (a site's notify endpoint).
#[derive(Debug, Clone, Copy)]
pub struct CenterCaller;

impl FromRequestParts<Arc<Center>> for CenterCaller {
    type Rejection = CenterError;

    async fn from_request_parts(
        parts: &mut Parts,
        center: &Arc<Center>,
    ) -> CenterResult<CenterCaller> {
        let conn = ConnInfo::from_request_parts(parts, center).await?;
        match conn.peer.as_deref() {
            Some(peer) if peer.center => Ok(CenterCaller),
            Some(_) => Err(CenterError::forbidden(
                "only the center may notify a site; this certificate is not the center's",
            )),
            None => Err(CenterError::new(
                ErrorKind::ClientCertRequired,
                "the center notifies a site with its client certificate",
            )),
        }
    }
}

impl JsonRequest for herd_proto::site::SiteRenewRequest {
    const WHAT: &'static str = "the site renewal";
}
impl JsonRequest for herd_proto::site::SiteEnrolRequest {
    const WHAT: &'static str = "the site enrolment";
}
impl JsonRequest for herd_proto::site::RelayedEnrol {
    const WHAT: &'static str = "the relayed enrolment";
}
impl JsonRequest for herd_proto::site::RelayedRenewal {
    const WHAT: &'static str = "the relayed renewal";
}
impl JsonRequest for herd_proto::site::RelayBatch {
    const WHAT: &'static str = "the relay batch";
    // A site sends at most 8 MiB of queue per batch (and always at least one item, which is a
    // terminal's event batch of at most 8 MiB).
    const LIMIT: u64 = 20 * MAX_JSON_BODY;
}
impl JsonRequest for herd_proto::site::SiteChanges {
    const WHAT: &'static str = "the notification";
}
impl JsonRequest for herd_proto::api::NewSiteToken {
    const WHAT: &'static str = "the token request";
}
