//! Herd immunity's endpoints for operators and analysts (issue 13): verdicts on files by
//! SHA-256, which publish or remove their signature in Herd's own set at once, the set's listing,
//! and the sample store.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herd_proto::api::{
    BodySignatureDoc, BodySignaturesDoc, BodySignaturesOutcome, ErrorBody, HerdSignatureDoc,
    SampleDoc, VerdictDoc, VerdictOutcome,
};

use super::extract::{JsonBody, JsonRequest, Judge, Path};
use crate::{Center, CenterResult};

impl JsonRequest for VerdictDoc {
    const WHAT: &'static str = "the verdict";
}

impl JsonRequest for BodySignaturesDoc {
    const WHAT: &'static str = "the body signatures";
}

/// Judge a file: `malicious` publishes its exact-hash signature in Herd's own signature set
/// (signed and pushed at once), `benign` removes it.
#[utoipa::path(post, path = "/v1/verdicts", tag = "operators",
    request_body = VerdictDoc,
    responses((status = 200, body = VerdictOutcome), (status = 422, body = ErrorBody, description = "`document_invalid`: the SHA-256, size, threat or verdict is not valid")))]
pub async fn post_verdict(
    State(center): State<Arc<Center>>,
    Judge(by): Judge,
    JsonBody(verdict): JsonBody<VerdictDoc>,
) -> CenterResult<Json<VerdictOutcome>> {
    center.verdict(verdict, by).await.map(Json)
}

/// Herd's own signature set: every signature, by SHA-256.
#[utoipa::path(get, path = "/v1/herd-set", tag = "operators",
    responses((status = 200, body = Vec<HerdSignatureDoc>), (status = 401, body = ErrorBody)))]
pub async fn list_herd_set(
    State(center): State<Arc<Center>>,
    _: Judge,
) -> CenterResult<Json<Vec<HerdSignatureDoc>>> {
    center.herd_signatures().await.map(Json)
}

/// The analysts' body signatures of Herd's own set (`.ndb`, `.ldb` lines and YARA files), by
/// format, then name.
#[utoipa::path(get, path = "/v1/herd-set/body-signatures", tag = "operators",
    responses((status = 200, body = Vec<BodySignatureDoc>), (status = 401, body = ErrorBody)))]
pub async fn list_body_signatures(
    State(center): State<Arc<Center>>,
    _: Judge,
) -> CenterResult<Json<Vec<BodySignatureDoc>>> {
    center.body_signatures().await.map(Json)
}

/// Add body signatures to Herd's own set: an `.ndb` or `.ldb` file's lines (each named
/// `Herd.Immunity.…`) or a YARA file, checked with the scan engine's parser, published to
/// every scanning terminal at once. Any refused line refuses the document, naming each line.
#[utoipa::path(post, path = "/v1/herd-set/body-signatures", tag = "operators",
    request_body = BodySignaturesDoc,
    responses((status = 200, body = BodySignaturesOutcome), (status = 409, body = ErrorBody, description = "`conflict`: a name the set already has"), (status = 422, body = ErrorBody, description = "`document_invalid`: lines the scan engine refuses, each in `problems` with its line number")))]
pub async fn add_body_signatures(
    State(center): State<Arc<Center>>,
    Judge(by): Judge,
    JsonBody(doc): JsonBody<BodySignaturesDoc>,
) -> CenterResult<Json<BodySignaturesOutcome>> {
    center.add_body_signatures(doc, by).await.map(Json)
}

/// Remove a body signature (or a YARA file's rules) from Herd's own set, at once on every
/// scanning terminal.
#[utoipa::path(delete, path = "/v1/herd-set/body-signatures/{name}", tag = "operators",
    params(("name" = String, Path, description = "The signature's name, or the YARA file's.")),
    responses((status = 204, description = "Removed."), (status = 404, body = ErrorBody)))]
pub async fn remove_body_signature(
    State(center): State<Arc<Center>>,
    _: Judge,
    Path(name): Path<String>,
) -> CenterResult<StatusCode> {
    center.remove_body_signature(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The sample store: every file terminals sent for the analysts, newest first.
#[utoipa::path(get, path = "/v1/samples", tag = "operators",
    responses((status = 200, body = Vec<SampleDoc>), (status = 401, body = ErrorBody)))]
pub async fn list_samples(
    State(center): State<Arc<Center>>,
    _: Judge,
) -> CenterResult<Json<Vec<SampleDoc>>> {
    center.samples().await.map(Json)
}

/// A sample's bytes, still neutralised (XOR-ed with the keystream of its SHA-256, see
/// `SampleUpload`): they can neither run nor match a signature until restored.
#[utoipa::path(get, path = "/v1/samples/{sha256}", tag = "operators",
    params(("sha256" = String, Path, description = "The sample's SHA-256.", pattern = r"^[0-9a-f]{64}$")),
    responses((status = 200, description = "The neutralised bytes.", content_type = "application/octet-stream"), (status = 404, body = ErrorBody)))]
pub async fn download_sample(
    State(center): State<Arc<Center>>,
    _: Judge,
    Path(sha256): Path<String>,
) -> CenterResult<Vec<u8>> {
    center.sample_bytes(&sha256).await
}

/// Whether the center has a sample: a terminal asks before uploading one and, when it does,
/// reports it without its bytes. At a site, the site asks the center.
#[utoipa::path(get, path = "/v1/terminal/samples/{sha256}", tag = "terminals",
    params(("sha256" = String, Path, description = "The sample's SHA-256.", pattern = r"^[0-9a-f]{64}$")),
    responses((status = 200, body = herd_proto::api::SamplePresence), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn sample_held(
    State(center): State<Arc<Center>>,
    _: super::extract::TerminalIdentity,
    super::extract::Path(sha256): super::extract::Path<String>,
) -> CenterResult<Json<herd_proto::api::SamplePresence>> {
    center.sample_held(&sha256).await.map(Json)
}
